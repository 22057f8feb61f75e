//! Parked connections (COREMQ_PARK_IDLE_AFTER): a connection quiet for that long gives its
//! socket to the shard's idle watcher and frees its task, yet to the client and to MQTT it is
//! still connected. Each case waits until the broker reports the connections parked
//! (`Stats::parked`), then checks that whatever needs them wakes them and is served as for a live
//! connection: bytes from the client, deliveries at every QoS, acknowledgements of what was in
//! flight when it parked, keep alive running out (with the will), takeover, the connection
//! limit and shutdown.

use std::time::{Duration, Instant};

use coremq::protocol::{Connect, Packet, ProtocolVersion, PublishAck, QoS, ReasonCode};

use crate::common::{RawClient, TestBroker};
use crate::{
    beside, connect, connect_packet, connect_with, expect_message, ping, publish, stats_when,
    subscribe, will,
};

each_version!(
    parked_subscriber_is_woken_by_deliveries_at_every_qos_and_parks_again,
    parked_client_is_woken_by_its_own_packets,
    parked_client_pings_are_answered_in_place_and_renew_its_keep_alive,
    acknowledgement_of_a_message_in_flight_when_it_parked_completes_the_flow,
    keep_alive_runs_out_while_parked_and_the_will_goes_out,
    parked_connection_is_taken_over_like_a_live_one,
    parked_connections_count_against_max_connections,
    shutdown_closes_parked_connections,
);

/// Quiet time before a connection parks in these cases.
const PARK_AFTER: Duration = Duration::from_millis(50);

fn parking_broker(tweak: impl FnOnce(&mut coremq::Config)) -> TestBroker {
    TestBroker::start_with(2, |c| {
        c.park_idle_after = PARK_AFTER;
        tweak(c)
    })
}

/// Waits until `n` connections are parked (and still counted as connections).
fn parked(broker: &TestBroker, n: usize) {
    stats_when(broker, &format!("{n} connections parked"), |s| {
        s.parked == n && s.connections >= n
    });
}

fn parked_subscriber_is_woken_by_deliveries_at_every_qos_and_parks_again(v: ProtocolVersion) {
    let _guard = beside();
    let broker = parking_broker(|_| {});
    // Subscriber and publisher on different shards: the delivery crosses the mesh to wake it.
    let mut sub = connect(&broker, v, &broker.id_on(1, "sub"), true);
    let mut publisher = connect(&broker, v, &broker.id_on(0, "pub"), true);
    subscribe(&mut sub, "park/deliver", QoS::ExactlyOnce);
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        parked(&broker, 2);
        let payload = format!("message {i}");
        publish(&mut publisher, "park/deliver", payload.as_bytes(), qos);
        let p = expect_message(&mut sub, "park/deliver", payload.as_bytes());
        assert_eq!(p.qos, qos);
        sub.acknowledge(&p);
    }
    parked(&broker, 2);
    ping(&mut sub);
}

fn parked_client_is_woken_by_its_own_packets(v: ProtocolVersion) {
    let _guard = beside();
    let broker = parking_broker(|_| {});
    let mut sub = connect(&broker, v, &broker.id_on(0, "sub"), true);
    subscribe(&mut sub, "park/own", QoS::AtLeastOnce);
    let mut publisher = connect(&broker, v, &broker.id_on(1, "pub"), true);
    parked(&broker, 2);
    ping(&mut publisher);
    parked(&broker, 2);
    publish(
        &mut publisher,
        "park/own",
        b"from a parked client",
        QoS::AtLeastOnce,
    );
    let p = expect_message(&mut sub, "park/own", b"from a parked client");
    sub.acknowledge(&p);
    // A new subscription made after waking is in force at once.
    parked(&broker, 2);
    subscribe(&mut publisher, "park/back", QoS::AtMostOnce);
    publish(&mut sub, "park/back", b"back", QoS::AtLeastOnce);
    expect_message(&mut publisher, "park/back", b"back");
}

fn parked_client_pings_are_answered_in_place_and_renew_its_keep_alive(v: ProtocolVersion) {
    let _guard = beside();
    // Parks after 300 ms: a connection woken by its PINGREQ would be live (not parked) for that
    // long, which the shard's stats show within a tick or two.
    let broker = TestBroker::start_with(2, |c| c.park_idle_after = Duration::from_millis(300));
    let connect = Connect {
        keep_alive: 1,
        ..connect_packet(v, &broker.id_on(1, "pinger"), true)
    };
    let mut pinger = connect_with(&broker, connect).0;
    parked(&broker, 1);
    let start = Instant::now();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(600));
        // [MQTT-3.12.4-1] the server answers PINGREQ with PINGRESP, parked or not.
        ping(&mut pinger);
        let watch = Instant::now();
        while watch.elapsed() < Duration::from_millis(250) {
            assert_eq!(
                broker.broker.stats().parked,
                1,
                "the PINGREQ woke the connection"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // [MQTT-3.1.2-24] each PINGREQ renewed the keep alive: well past 1.5 s of the last live
    // packet, the connection is still there.
    assert!(start.elapsed() > Duration::from_millis(2500));
    assert_eq!(broker.broker.stats().connections, 1);
    ping(&mut pinger);
}

fn acknowledgement_of_a_message_in_flight_when_it_parked_completes_the_flow(v: ProtocolVersion) {
    let _guard = beside();
    let broker = parking_broker(|c| c.max_inflight = 1);
    let mut sub = connect(&broker, v, &broker.id_on(1, "sub"), false);
    subscribe(&mut sub, "park/inflight", QoS::AtLeastOnce);
    let mut publisher = connect(&broker, v, &broker.id_on(0, "pub"), true);
    publish(&mut publisher, "park/inflight", b"first", QoS::AtLeastOnce);
    let first = expect_message(&mut sub, "park/inflight", b"first");
    // The window (1) is full: "second" waits in the session's queue while the client parks.
    publish(&mut publisher, "park/inflight", b"second", QoS::AtLeastOnce);
    parked(&broker, 2);
    sub.send(&Packet::PubAck(PublishAck::new(first.packet_id.unwrap())));
    // [MQTT-4.3.2] the acknowledgement ends "first"'s flow (no resend) and frees the window.
    let second = expect_message(&mut sub, "park/inflight", b"second");
    assert!(!second.dup);
    sub.acknowledge(&second);
    parked(&broker, 2);
    ping(&mut sub);
}

fn keep_alive_runs_out_while_parked_and_the_will_goes_out(v: ProtocolVersion) {
    let _guard = beside();
    let broker = parking_broker(|_| {});
    let mut watcher = connect(&broker, v, &broker.id_on(0, "watcher"), true);
    subscribe(&mut watcher, "park/will", QoS::AtMostOnce);
    let start = Instant::now();
    let connect = Connect {
        keep_alive: 1,
        will: Some(will("park/will", "gone", QoS::AtMostOnce, false)),
        ..connect_packet(v, &broker.id_on(1, "silent"), true)
    };
    let mut silent = connect_with(&broker, connect).0;
    parked(&broker, 2);
    // [MQTT-3.1.2-24] parked or not, 1.5 × keep alive without a packet ends the connection
    // (MQTT 5: DISCONNECT 0x8D first), and [MQTT-3.1.2-8] the will is published.
    silent.expect_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT);
    let closed = start.elapsed();
    assert!(
        closed >= Duration::from_millis(1400) && closed < Duration::from_secs(4),
        "closed after {closed:?}"
    );
    expect_message(&mut watcher, "park/will", b"gone");
}

fn parked_connection_is_taken_over_like_a_live_one(v: ProtocolVersion) {
    let _guard = beside();
    let broker = parking_broker(|_| {});
    let id = broker.id_on(1, "twice");
    let mut first = connect(&broker, v, &id, false);
    subscribe(&mut first, "park/takeover", QoS::AtLeastOnce);
    parked(&broker, 1);
    let mut second = RawClient::connect(broker.addr, v);
    second.send(&Packet::Connect(Box::new(connect_packet(v, &id, false))));
    match second.expect_packet() {
        Packet::ConnAck(ack) => {
            assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
            assert!(
                ack.session_present,
                "the parked connection's session is resumed"
            );
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    // [MQTT-3.1.4-2] the existing connection is closed (MQTT 5: DISCONNECT 0x8E first).
    first.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER);
    let mut publisher = connect(&broker, v, &broker.id_on(0, "pub"), true);
    publish(
        &mut publisher,
        "park/takeover",
        b"to the new one",
        QoS::AtLeastOnce,
    );
    let p = expect_message(&mut second, "park/takeover", b"to the new one");
    second.acknowledge(&p);
}

fn parked_connections_count_against_max_connections(v: ProtocolVersion) {
    let _guard = beside();
    let broker = parking_broker(|c| c.max_connections = 2);
    let mut a = connect(&broker, v, &broker.id_on(0, "a"), true);
    let _b = connect(&broker, v, &broker.id_on(1, "b"), true);
    parked(&broker, 2);
    let mut over = RawClient::connect(broker.addr, v);
    over.send(&Packet::Connect(Box::new(connect_packet(
        v,
        &broker.id_on(0, "over"),
        true,
    ))));
    // CONNACK 0x97 Quota exceeded (3.1.1: return code 3), then the close [MQTT-3.2.2-5].
    assert_eq!(
        over.expect_close(),
        vec![crate::limits::refusal(v, ReasonCode::QUOTA_EXCEEDED)]
    );
    ping(&mut a);
}

fn shutdown_closes_parked_connections(v: ProtocolVersion) {
    let _guard = beside();
    let broker = parking_broker(|_| {});
    let mut clients: Vec<RawClient> = (0..4)
        .map(|n| {
            let mut c = connect_packet(v, &broker.id_on(n % 2, &format!("idle{n}")), n < 2);
            c.will = Some(will(
                "park/shutdown",
                "must not be published",
                QoS::AtMostOnce,
                false,
            ));
            connect_with(&broker, c).0
        })
        .collect();
    parked(&broker, 4);
    let TestBroker { broker, .. } = broker;
    let start = Instant::now();
    broker.shutdown();
    assert!(start.elapsed() < Duration::from_secs(10));
    for c in &mut clients {
        // MQTT 5: DISCONNECT 0x8B Server shutting down, then the close; 3.1.1: the close.
        c.expect_disconnect(ReasonCode::SERVER_SHUTTING_DOWN);
    }
}
