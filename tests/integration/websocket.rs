//! MQTT over WebSocket (COREMQ_WS_LISTEN) and over WebSocket over TLS (COREMQ_WSS_LISTEN):
//! MQTT.js in Node and in a real browser (headless Chromium driven by playwright-core, the test
//! CA's server key trusted on its command line), and exact frames for what clients may do but
//! MQTT.js does not (packets split across frames or packed into one, pings, close).

use std::time::Duration;

use coremq::protocol::{Packet, ProtocolVersion, QoS};

use crate::common::pki::{Ca, Issued, Pki};
use crate::common::ws::{self, WsClient};
use crate::common::{connect_packet, publish_packet, TestBroker};
use crate::run_script;
use crate::tools::require;

const NPM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/npm");
const MQTTJS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/npm/node_modules/mqtt");

/// A broker with plain MQTT, WS and WSS listeners (ephemeral ports), WSS with `server`'s
/// certificate.
fn ws_broker(server: &Issued) -> TestBroker {
    let (cert, key) = (server.cert.clone(), server.key.clone());
    TestBroker::start_with(2, move |c| {
        c.ws_listen = Some("127.0.0.1:0".parse().unwrap());
        c.wss_listen = Some("127.0.0.1:0".parse().unwrap());
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
    })
}

fn urls(broker: &TestBroker) -> (String, String) {
    let ws = broker.broker.ws_addr().unwrap();
    let wss = broker.broker.wss_addr().unwrap();
    (
        format!("ws://{ws}/mqtt"),
        format!("wss://localhost:{}/mqtt", wss.port()),
    )
}

/// What both scripts report for one URL: each QoS came back at its QoS, the big one whole.
fn assert_round_trip(report: &serde_json::Value, which: &str, topic: &str, big: usize) {
    let got = report[which]
        .as_array()
        .unwrap_or_else(|| panic!("{which} in {report}"));
    let mut got: Vec<(String, u64, u64)> = got
        .iter()
        .map(|m| {
            (
                m["topic"].as_str().unwrap().to_owned(),
                m["qos"].as_u64().unwrap(),
                m["length"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(String, u64, u64)> = vec![
        (format!("{topic}/0"), 0, 0),
        (format!("{topic}/1"), 1, 0),
        (format!("{topic}/2"), 2, big as u64),
    ];
    assert_eq!(got.len(), 3, "{which}: {report}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((&g.0, g.1), (&w.0, w.1), "{which}: {report}");
        if w.2 > 0 {
            assert_eq!(g.2, w.2, "{which}: {report}");
        }
    }
}

/// Runs the node `script` (under tests/integration/) against a broker with WS and WSS
/// listeners: its arguments are `dir`, the ws:// and wss:// URLs, and what `trust` gives for the
/// test CA and server certificate. Returns the JSON report it prints.
fn run_round_trips(
    name: &str,
    script: &str,
    dir: &str,
    trust: impl FnOnce(&Ca, &Issued) -> String,
    limit: Duration,
) -> serde_json::Value {
    let pki = Pki::new(name);
    let ca = pki.ca("ca");
    let server = pki.server(&ca, "server");
    let broker = ws_broker(&server);
    let (ws, wss) = urls(&broker);
    let script = format!("{}/tests/integration/{script}", env!("CARGO_MANIFEST_DIR"));
    let args = [dir.to_owned(), ws, wss, trust(&ca, &server)];
    let out = run_script("node", &script, &args, limit);
    serde_json::from_str(out.trim()).expect("JSON")
}

/// MQTT.js in Node: MQTT 5 over ws://, 3.1.1 over wss:// with the CA given.
#[test]
fn mqttjs_over_ws_and_wss() {
    require("node");
    let ca_file = |ca: &Ca, _: &Issued| ca.pem.to_str().unwrap().to_owned();
    let report = run_round_trips(
        "ws-node",
        "mqttjs_ws.js",
        MQTTJS,
        ca_file,
        Duration::from_secs(30),
    );
    assert_round_trip(&report, "ws", "js", 100_000);
    assert_round_trip(&report, "wss", "js", 100_000);
}

/// A real browser: headless Chromium loads tests/integration/browser/mqtt_page.html, whose
/// MQTT.js connects over ws:// and wss://, subscribes, publishes at QoS 0/1/2 and reports what
/// it received. The server's key is trusted on Chromium's command line.
#[test]
fn browser_over_ws_and_wss() {
    require("node");
    require("chromium");
    let spki = |_: &Ca, server: &Issued| server.spki_sha256.clone();
    let report = run_round_trips(
        "ws-browser",
        "browser/browser_ws.js",
        NPM,
        spki,
        Duration::from_secs(60),
    );
    assert_round_trip(&report, "ws", "browser/ws", 50_000);
    assert_round_trip(&report, "wss", "browser/wss", 50_000);
    let log = report["log"].as_str().unwrap_or_default();
    assert!(log.contains("connected to wss://"), "{log}");
}

/// [MQTT-6.0.0-2] packets need not line up with frames: a CONNECT split over three frames (one
/// of them a fragmented message with a ping between its fragments), then SUBSCRIBE and PUBLISH
/// packed into one frame; the ping is answered, and a close is echoed.
#[test]
fn packets_split_across_and_packed_into_frames() {
    let pki = Pki::new("ws-frames");
    let ca = pki.ca("ca");
    let server = pki.server(&ca, "server");
    let broker = ws_broker(&server);
    let addr = broker.broker.ws_addr().unwrap();
    let v = ProtocolVersion::V5;
    // A client homed on each shard: whichever shard accepts the socket, one of the two is
    // handed over to its home shard with the pong answered during its CONNECT phase.
    let mut clients = Vec::new();
    for shard in 0..2 {
        let mut c = WsClient::connect(addr, v);
        let id = broker.id_on(shard, "frames");
        let connect = c.encode(&Packet::Connect(Box::new(connect_packet(v, &id, true))));
        let (a, rest) = connect.split_at(3);
        let (b, d) = rest.split_at(4);
        c.send_frame(true, ws::BINARY, a);
        c.send_frame(false, ws::BINARY, b);
        c.send_frame(true, ws::PING, b"are you there");
        c.send_frame(true, ws::CONTINUATION, d);
        assert_eq!(c.recv_frame(), Some((ws::PONG, b"are you there".to_vec())));
        assert!(matches!(c.expect_packet(), Packet::ConnAck(_)));
        clients.push(c);
    }
    let mut c = clients.pop().unwrap();

    let subscribe = crate::common::subscribe_packet(&[("frames/#", QoS::AtLeastOnce)], 1);
    let mut packed = c.encode(&subscribe);
    packed.extend(c.encode(&publish_packet(
        "frames/x",
        vec![9u8; 70_000],
        QoS::AtLeastOnce,
        2,
    )));
    c.send_frame(true, ws::BINARY, &packed);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match c.expect_packet() {
            Packet::SubAck(_) => seen.push("suback"),
            Packet::PubAck(_) => seen.push("puback"),
            Packet::Publish(p) => {
                assert_eq!(p.payload.len(), 70_000);
                seen.push("publish");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    seen.sort();
    assert_eq!(seen, ["puback", "publish", "suback"]);

    c.send_frame(true, ws::CLOSE, &1000u16.to_be_bytes());
    assert_eq!(
        c.recv_frame(),
        Some((ws::CLOSE, 1000u16.to_be_bytes().to_vec()))
    );
    assert_eq!(
        c.recv_frame(),
        None,
        "the broker closes after echoing the close"
    );
}

/// Idle WebSocket connections park like plain ones (their framing state waits with the
/// socket) and wake for a delivery or for the client's next frame.
#[test]
fn websocket_connections_park_and_wake() {
    let broker = TestBroker::start_with(2, |c| {
        c.ws_listen = Some("127.0.0.1:0".parse().unwrap());
        c.park_idle_after = Duration::from_millis(50);
    });
    let v = ProtocolVersion::V3_1_1;
    let mut c = WsClient::connect(broker.broker.ws_addr().unwrap(), v);
    c.send(&Packet::Connect(Box::new(connect_packet(
        v,
        &broker.id_on(0, "wspark"),
        true,
    ))));
    assert!(matches!(c.expect_packet(), Packet::ConnAck(_)));
    c.send(&crate::common::subscribe_packet(
        &[("park/#", QoS::AtLeastOnce)],
        1,
    ));
    assert!(matches!(c.expect_packet(), Packet::SubAck(_)));
    let parked = |n| {
        let deadline = std::time::Instant::now() + crate::common::PATIENCE;
        while broker.broker.stats().parked < n {
            assert!(std::time::Instant::now() < deadline, "not parked");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    parked(1);
    let mut publisher = crate::raw_connect(&broker, v, &broker.id_on(1, "plainpub"));
    publisher.send(&publish_packet("park/1", "woken", QoS::AtMostOnce, 0));
    match c.expect_packet() {
        Packet::Publish(p) => assert_eq!(p.payload.as_ref(), b"woken"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    parked(2);
    // The client's own frame wakes it too.
    c.send(&Packet::PingReq);
    assert!(matches!(c.expect_packet(), Packet::PingResp));
}
