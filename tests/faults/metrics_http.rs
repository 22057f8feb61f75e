//! Hostile clients of the metrics endpoint (COREMQ_METRICS_LISTEN): garbage, huge headers,
//! slowloris, a crowd of connections. Each costs only its own connection: the endpoint answers
//! or closes it, MQTT traffic across the shards keeps flowing meanwhile, and the endpoint serves
//! scrapes again once the bad clients are gone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use coremq::protocol::{ProtocolVersion, QoS};

use crate::beside;
use crate::common::{
    connect, expect_message, http_get, publish, subscribe, RawClient, TestBroker, PATIENCE,
};

/// The endpoint's limits (`metrics::http`): clients served at once, and the time a client has to
/// send its whole request.
const MAX_CLIENTS: usize = 16;
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// Sends `bytes` and returns everything the endpoint answers before it closes the connection.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    // The endpoint may answer (and close) before it read everything: a failed write is fine.
    let _ = stream.write_all(bytes);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

/// One message from a publisher on shard 0 to a subscriber on shard 1: both shards serve.
fn round_trip(publisher: &mut RawClient, sub: &mut RawClient, n: usize) {
    let payload = format!("still here {n}");
    publish(publisher, "m/x", &payload, QoS::AtLeastOnce);
    let p = expect_message(sub, "m/x", &payload);
    sub.acknowledge(&p);
}

#[test]
fn bad_http_costs_only_its_own_connection() {
    let _g = beside();
    let broker = TestBroker::start_with(2, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    });
    let addr = broker.broker.metrics_addr().unwrap();
    let mut sub = connect(&broker, ProtocolVersion::V5, &broker.id_on(1, "sub"), true);
    subscribe(&mut sub, "m/#", QoS::AtLeastOnce);
    let mut publisher = connect(&broker, ProtocolVersion::V5, &broker.id_on(0, "pub"), true);

    let garbage = exchange(addr, b"\x00\xff\x16\x03\x01 not http at all\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage:?}");
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    huge.resize(huge.len() + 64 * 1024, b'a');
    let huge = exchange(addr, &huge);
    assert!(huge.starts_with("HTTP/1.1 431 "), "{huge:?}");
    assert!(exchange(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
    // Slowloris: every serving slot holds a client that never finishes its request line.
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..MAX_CLIENTS)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metr").unwrap();
            s
        })
        .collect();
    // Give the endpoint a moment to take them all in; then one more is turned away at once.
    std::thread::sleep(Duration::from_millis(200));
    for s in &slow {
        s.set_nonblocking(true).unwrap();
        let held = (&*s).read(&mut [0u8; 64]);
        assert!(
            matches!(&held, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a slow client is held, not answered: {held:?}"
        );
        s.set_nonblocking(false).unwrap();
    }
    let extra = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(extra.starts_with("HTTP/1.1 503 "), "{extra:?}");
    // A crowd that connects and leaves without a word is turned away too.
    for _ in 0..200 {
        drop(TcpStream::connect(addr).unwrap());
    }
    // Meanwhile MQTT goes on across both shards.
    for n in 0..50 {
        round_trip(&mut publisher, &mut sub, n);
    }
    // The slow clients are cut off at the deadline...
    for s in &mut slow {
        s.set_read_timeout(Some(REQUEST_DEADLINE + PATIENCE))
            .unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "no answer to half a request: {rest:?}");
    }
    assert!(started.elapsed() >= REQUEST_DEADLINE - Duration::from_millis(300));
    // ...and then the endpoint serves a scrape again.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = http_get(addr, "/metrics");
        if status == 200 {
            assert!(body.contains("coremq_logins_total"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no scrape after the slow clients left: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    round_trip(&mut publisher, &mut sub, 50);
}
