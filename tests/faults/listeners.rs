//! Bad peers on the TLS and WebSocket listeners: each one affects only itself. Plain MQTT on the
//! TLS port, garbage and stalled handshakes (bounded by COREMQ_CONNECT_TIMEOUT), HTTP requests
//! that are no MQTT upgrade (426, 400, 404), text and oversized frames (close 1003, 1009), and a
//! WebSocket client that never reads. Every case checks that a healthy client on another
//! listener keeps working while it happens.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use coremq::protocol::{Packet, ProtocolVersion, QoS};

use crate::common::pki::{client_config, tls_mqtt_connect, Ca, Pki, TlsRaw, Validity};
use crate::common::ws::{self, WsClient};
use crate::common::{
    connect, connect_packet, expect_message, ping, publish_packet, subscribe, RawClient, TestBroker,
};
use crate::{beside, stats_when};

/// A broker with every listener: MQTT, TLS, WS and WSS.
fn all_listeners(pki: &Pki, tweak: impl FnOnce(&mut coremq::Config)) -> (TestBroker, Ca) {
    let ca = pki.ca("ca");
    let server = pki.server(&ca, "server");
    let broker = TestBroker::start_with(2, |c| {
        for l in [&mut c.tls_listen, &mut c.ws_listen, &mut c.wss_listen] {
            *l = Some("127.0.0.1:0".parse().unwrap());
        }
        c.tls_cert = Some(server.cert.clone());
        c.tls_key = Some(server.key.clone());
        c.connect_timeout = Duration::from_millis(500);
        tweak(c);
    });
    (broker, ca)
}

/// A healthy client on each of the plain and TLS listeners still gets through.
fn others_still_served(broker: &TestBroker, ca: &Ca) {
    let mut plain = connect(broker, ProtocolVersion::V5, "healthy-plain", true);
    ping(&mut plain);
    let tls = broker.broker.tls_addr().unwrap();
    let got = tls_mqtt_connect(tls, client_config(ca, None), "localhost", "healthy-tls");
    assert_eq!(got, Ok(0));
}

/// Reads until the peer closes; panics if that takes longer than `limit`. Returns what was read.
fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let start = Instant::now();
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return all,
            Err(e) => panic!(
                "not closed within {limit:?} ({e}) after {:?}",
                start.elapsed()
            ),
        }
    }
}

/// Plain MQTT sent to the TLS port gets no CONNACK: the handshake fails and the socket closes.
#[test]
fn plain_mqtt_on_the_tls_port_is_closed() {
    let _g = beside();
    let pki = Pki::new("bad-plain-on-tls");
    let (broker, ca) = all_listeners(&pki, |_| {});
    let tls = broker.broker.tls_addr().unwrap();
    let v = ProtocolVersion::V3_1_1;
    let mut lost = RawClient::connect(tls, v);
    lost.send(&Packet::Connect(Box::new(connect_packet(v, "lost", true))));
    let mut answer = Vec::new();
    let _ = lost.stream.read_to_end(&mut answer);
    assert!(
        answer.first() != Some(&0x20),
        "no CONNACK on the TLS port: {answer:02x?}"
    );
    others_still_served(&broker, &ca);
}

/// Garbage instead of a ClientHello is refused at once; a handshake that stalls (nothing sent,
/// or half a ClientHello) is closed after COREMQ_CONNECT_TIMEOUT (500 ms here).
#[test]
fn garbage_and_stalled_handshakes_are_bounded() {
    let _g = beside();
    let pki = Pki::new("bad-handshakes");
    let (broker, ca) = all_listeners(&pki, |_| {});
    let tls = broker.broker.tls_addr().unwrap();

    let mut garbage = TcpStream::connect(tls).unwrap();
    let noise: Vec<u8> = (0..2000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = garbage.write_all(&noise);
    read_to_close(&mut garbage, Duration::from_secs(2));

    let mut silent = TcpStream::connect(tls).unwrap();
    let mut half = TcpStream::connect(tls).unwrap();
    half.write_all(&client_hello()[..40]).unwrap();
    let start = Instant::now();
    // Meanwhile, the other listeners serve as usual.
    others_still_served(&broker, &ca);
    read_to_close(&mut silent, Duration::from_secs(3));
    read_to_close(&mut half, Duration::from_secs(3));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );
    // The same on the WSS port, and a stalled HTTP request on the WS port.
    for addr in [
        broker.broker.wss_addr().unwrap(),
        broker.broker.ws_addr().unwrap(),
    ] {
        let mut stalled = TcpStream::connect(addr).unwrap();
        stalled
            .write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        read_to_close(&mut stalled, Duration::from_secs(3));
    }
    stats_when(&broker, "only the healthy clients' connections left", |s| {
        s.connections <= 1
    });
}

/// The first flight of a real TLS client.
fn client_hello() -> Vec<u8> {
    let pki = Pki::new("hello");
    let ca = pki.ca("ca");
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(client_config(&ca, None), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// HTTP requests that are not an MQTT WebSocket upgrade get an HTTP error, then a close.
#[test]
fn http_requests_without_an_mqtt_upgrade_are_refused() {
    let _g = beside();
    let pki = Pki::new("bad-http");
    let (broker, ca) = all_listeners(&pki, |c| c.ws_origins = vec!["https://app.example".into()]);
    let addr = broker.broker.ws_addr().unwrap();
    let cases = [
        ("GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(), 426),
        (ws::request("/mqtt", None, ""), 400),
        (ws::request("/mqtt", Some("chat"), ""), 400),
        (ws::request("/other", Some("mqtt"), ""), 404),
        (
            ws::request("/mqtt", Some("mqtt"), "Origin: https://evil.example\r\n"),
            403,
        ),
        (
            "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00".to_owned(),
            400,
        ),
    ];
    for (request, want) in cases {
        let (mut stream, status, head) = ws::send_request(addr, &request);
        assert_eq!(status, want, "{request:?} -> {head}");
        read_to_close(&mut stream, Duration::from_secs(2));
    }
    let allowed = ws::request("/mqtt", Some("mqtt"), "Origin: https://app.example\r\n");
    assert_eq!(ws::send_request(addr, &allowed).1, 101);
    others_still_served(&broker, &ca);
}

/// A text frame closes with 1003, a frame longer than COREMQ_MAX_PACKET_SIZE with 1009 (from its
/// header alone: the broker does not wait for the body), an unmasked frame with 1002.
#[test]
fn bad_frames_close_with_the_rfc_code() {
    let _g = beside();
    let pki = Pki::new("bad-frames");
    let (broker, ca) = all_listeners(&pki, |c| c.max_packet_size = 64 * 1024);
    let addr = broker.broker.ws_addr().unwrap();
    let v = ProtocolVersion::V5;
    let header_of_a_huge_frame = {
        let mut f = vec![0x82, 0xff];
        f.extend_from_slice(&(1u64 << 40).to_be_bytes());
        f.extend_from_slice(&[1, 2, 3, 4]);
        f
    };
    let cases: [(Vec<u8>, u16); 3] = [
        (WsClient::frame(true, ws::TEXT, b"\x10\x00"), 1003),
        (header_of_a_huge_frame, 1009),
        (vec![0x82, 0x02, 0xc0, 0x00], 1002),
    ];
    for (i, (frame, code)) in cases.into_iter().enumerate() {
        let mut c = WsClient::connect(addr, v);
        c.send(&Packet::Connect(Box::new(connect_packet(
            v,
            &format!("bad-{i}"),
            true,
        ))));
        assert!(matches!(c.expect_packet(), Packet::ConnAck(_)));
        c.send_raw(&frame);
        assert_eq!(
            c.recv_frame(),
            Some((ws::CLOSE, code.to_be_bytes().to_vec()))
        );
        assert_eq!(c.recv_frame(), None);
    }
    others_still_served(&broker, &ca);
}

/// A WebSocket subscriber that stops reading holds nothing up: a healthy subscriber on the plain
/// listener gets every message at once, the stuck one's QoS 0 messages are dropped (counted)
/// once its socket has taken nothing for COREMQ_SLOW_READER_TIMEOUT, and the broker's buffers for
/// it stay bounded by COREMQ_MAX_OUTBOUND_BUFFER.
#[test]
fn a_websocket_client_that_never_reads_holds_nothing_up() {
    let _g = beside();
    let pki = Pki::new("ws-stuck");
    let (broker, ca) = all_listeners(&pki, |c| {
        c.max_outbound_buffer = 64 * 1024;
        c.slow_reader_timeout = Duration::from_millis(100);
    });
    let v = ProtocolVersion::V3_1_1;
    let stuck_addr: SocketAddr = broker.broker.ws_addr().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&stuck_addr.into()).unwrap();
    let mut stuck = WsClient::upgrade_stream(socket.into(), v);
    stuck.send(&Packet::Connect(Box::new(connect_packet(v, "stuck", true))));
    assert!(matches!(stuck.expect_packet(), Packet::ConnAck(_)));
    stuck.send(&crate::common::subscribe_packet(
        &[("flood/#", QoS::AtMostOnce)],
        1,
    ));
    assert!(matches!(stuck.expect_packet(), Packet::SubAck(_)));
    // From here on the stuck client reads nothing.

    let mut healthy = connect(&broker, v, &broker.id_on(1, "healthy"), true);
    subscribe(&mut healthy, "flood/#", QoS::AtMostOnce);
    let mut publisher = connect(&broker, v, &broker.id_on(0, "flooder"), true);
    // Rounds of 40 KiB: the healthy subscriber, reading each round, never has more than that
    // waiting; the stuck one has 16 MiB sent its way, more than the kernel's socket buffers
    // between it and the broker hold.
    let payload = vec![0x5a; 4096];
    for round in 0..400 {
        for i in 0..10 {
            let topic = format!("flood/{round}/{i}");
            publisher.send(&publish_packet(&topic, &payload, QoS::AtMostOnce, 0));
        }
        for i in 0..10 {
            expect_message(&mut healthy, &format!("flood/{round}/{i}"), &payload);
        }
        if round == 100 {
            // Past the slow reader timeout: from now on its messages are dropped.
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    let s = stats_when(&broker, "the stuck subscriber's messages dropped", |s| {
        s.drops.qos0_congested > 0
    });
    // Each dropped message counted once: never more than the 4,000 sent.
    assert!(s.drops.qos0_congested <= 4000, "{s:?}");
    ping(&mut publisher);
    others_still_served(&broker, &ca);
}

/// Client certificates the broker must refuse (from another CA, expired, none where one is
/// required) fail the handshake; meanwhile a healthy client on the plain listener is served and a
/// valid certificate gets in.
#[test]
fn refused_client_certificates_affect_only_themselves() {
    let _g = beside();
    let pki = Pki::new("bad-client-certs");
    let ca = pki.ca("ca");
    let server = pki.server(&ca, "server");
    let good = pki.client(&ca, "good", Some("ok"), Validity::Current);
    let expired = pki.client(&ca, "expired", Some("old"), Validity::Expired);
    let other_ca = pki.ca("other");
    let stranger = pki.client(&other_ca, "stranger", Some("x"), Validity::Current);
    let broker = TestBroker::start_with(2, |c| {
        c.tls_listen = Some("127.0.0.1:0".parse().unwrap());
        c.tls_cert = Some(server.cert.clone());
        c.tls_key = Some(server.key.clone());
        c.tls_client_ca = Some(ca.pem.clone());
    });
    let tls = broker.broker.tls_addr().unwrap();
    let mut plain = connect(&broker, ProtocolVersion::V5, "healthy", true);
    for (case, client) in [
        ("stranger", Some(&stranger)),
        ("expired", Some(&expired)),
        ("none", None),
    ] {
        let got = tls_mqtt_connect(tls, client_config(&ca, client), "localhost", case);
        assert!(got.is_err(), "{case}: {got:?}");
        ping(&mut plain);
    }
    assert_eq!(
        tls_mqtt_connect(tls, client_config(&ca, Some(&good)), "localhost", "good"),
        Ok(0)
    );
    stats_when(&broker, "only the healthy client left", |s| {
        s.connections == 1
    });
}

/// A TCP socket to `addr` whose receive buffer is as small as the kernel allows, so that a
/// client that stops reading stops the broker's writes after a few KiB.
fn small_window(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

/// A TLS subscriber that stops reading while the broker still holds encrypted bytes for it (one
/// large message: the writer has handed it all to TLS and waits for the socket), then resets the
/// connection: the broker ends that connection only (a failed flush of the stream's own bytes
/// once panicked a shard), and both shards keep serving.
#[test]
fn a_tls_subscriber_that_stops_reading_then_resets_affects_only_itself() {
    let _g = beside();
    let pki = Pki::new("tls-reset");
    let (broker, ca) = all_listeners(&pki, |c| {
        c.max_outbound_buffer = 8 << 20;
        c.max_packet_size = 8 << 20;
    });
    let tls = broker.broker.tls_addr().unwrap();
    let v = ProtocolVersion::V3_1_1;
    for shard in 0..2 {
        let id = broker.id_on(shard, "stuck-tls");
        let mut stuck = TlsRaw::connect(small_window(tls), client_config(&ca, None), &id);
        stuck.send(&crate::common::subscribe_packet(
            &[("reset/#", QoS::AtMostOnce)],
            1,
        ));
        assert!(matches!(stuck.recv(), Some(Packet::SubAck(_))));
        let mut publisher = connect(&broker, v, &broker.id_on(1 - shard, "flood"), true);
        publisher.send(&publish_packet(
            "reset/big",
            vec![0x42; 4 << 20],
            QoS::AtMostOnce,
            0,
        ));
        ping(&mut publisher);
        std::thread::sleep(Duration::from_millis(200));
        // A reset: the broker's next flush to it fails.
        socket2::SockRef::from(stuck.tls.get_ref())
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(stuck);
        std::thread::sleep(Duration::from_millis(200));
        ping(&mut publisher);
    }
    // Both shards still serve: a client homed on each.
    for shard in 0..2 {
        let mut c = connect(&broker, v, &broker.id_on(shard, "after"), true);
        ping(&mut c);
    }
    others_still_served(&broker, &ca);
}

/// A TLS subscriber that falls behind (one message larger than the socket buffers, handed to
/// TLS at once) and then catches up is not left marked as a slow reader: a message long after
/// reaches it, nothing dropped.
#[test]
fn a_tls_subscriber_that_caught_up_is_not_a_slow_reader() {
    let _g = beside();
    let pki = Pki::new("tls-caught-up");
    let (broker, ca) = all_listeners(&pki, |c| {
        c.max_outbound_buffer = 8 << 20;
        c.max_packet_size = 8 << 20;
        c.slow_reader_timeout = Duration::from_millis(100);
    });
    let tls = broker.broker.tls_addr().unwrap();
    let v = ProtocolVersion::V3_1_1;
    let mut sub = TlsRaw::connect(
        small_window(tls),
        client_config(&ca, None),
        &broker.id_on(0, "catching-up"),
    );
    sub.send(&crate::common::subscribe_packet(
        &[("burst/#", QoS::AtMostOnce)],
        1,
    ));
    assert!(matches!(sub.recv(), Some(Packet::SubAck(_))));
    let mut publisher = connect(&broker, v, &broker.id_on(1, "burster"), true);
    publisher.send(&publish_packet(
        "burst/big",
        vec![0x42; 4 << 20],
        QoS::AtMostOnce,
        0,
    ));
    ping(&mut publisher);
    // It reads nothing for a while (the broker's flush waits), then all of it.
    std::thread::sleep(Duration::from_millis(50));
    match sub.recv() {
        Some(Packet::Publish(p)) => assert_eq!(p.payload.len(), 4 << 20),
        other => panic!("the big message: {other:?}"),
    }
    // Well past the slow-reader timeout, one more message.
    std::thread::sleep(Duration::from_millis(400));
    publisher.send(&publish_packet("burst/late", "late", QoS::AtMostOnce, 0));
    match sub.recv() {
        Some(Packet::Publish(p)) => assert_eq!(p.topic.as_str(), "burst/late"),
        other => panic!("the late message: {other:?}"),
    }
    assert_eq!(broker.broker.stats().drops.qos0_congested, 0);
}

/// A WebSocket client that floods pings and never reads the pongs: the broker stops reading it
/// once 64 KiB of replies wait, instead of queueing pongs without bound; others are served.
#[test]
fn a_ping_flood_that_reads_no_pongs_is_bounded() {
    // Measures the process's memory: no other test runs meanwhile.
    let _g = crate::alone();
    let pki = Pki::new("ws-ping-flood");
    let (broker, ca) = all_listeners(&pki, |_| {});
    let v = ProtocolVersion::V3_1_1;
    let mut c = WsClient::upgrade_stream(small_window(broker.broker.ws_addr().unwrap()), v);
    c.send(&Packet::Connect(Box::new(connect_packet(
        v, "pinger", true,
    ))));
    assert!(matches!(c.expect_packet(), Packet::ConnAck(_)));
    c.stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let before = crate::rss_kib();
    let ping = WsClient::frame(true, ws::PING, &[0x70; 125]);
    let mut sent = 0usize;
    let flood: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 64).collect();
    // 64 MiB of pings at most; the broker stops taking them long before.
    for _ in 0..8192 {
        if c.stream.write_all(&flood).is_err() {
            break;
        }
        sent += flood.len();
    }
    assert!(
        sent < 64 << 20,
        "the broker kept reading pings it could not answer"
    );
    let grown = crate::rss_kib().saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "memory grew by {grown} KiB during a ping flood"
    );
    others_still_served(&broker, &ca);
}
