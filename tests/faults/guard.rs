//! Secure by default and hard to abuse (issue 23): anonymous clients only on a loopback listener
//! unless the operator opens it; password guessing throttled per source address; connection and
//! half-open floods from one address contained; flapping client ids refused for a while; the
//! ban file. Several hosts are played with source addresses from 127.0.0.0/8 (`connect_from`),
//! so "another address" is real.
//!
//! Each case turns on only the guard it is about (the test broker has them off, see
//! `tests/common`) and shows the guard at work: without it, the same traffic gets through.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use coremq::protocol::{ConnAck, Connect, MqttString, Packet, ProtocolVersion, QoS, ReasonCode};

use std::io::Write;

use crate::common::{publish, RawClient, TempDir, TestBroker};
use crate::{beside, connect_packet, eventually, ping, stats_when, subscribe};

/// Written by Mosquitto's `mosquitto_passwd` 2.0.11 (101 PBKDF2 rounds): alice / wonderland.
const ALICE: &str = "alice:$7$101$j7H2se7gCQfeTGj2$7savbhJGmymeGpe1qLbsfNPLYiIxXSPTk0eDRBs1XUNkwKlhZ+3hbkWyxlq+mWYJU81o2nLSmsJ1rhQk1hBb/w==";
const ALICE_PASSWORD: &str = "wonderland";

fn host(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// The broker's port on 127.0.0.1 (also when it listens on 0.0.0.0).
fn loopback(broker: &TestBroker) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], broker.port()))
}

/// Sends `connect` from `source` and returns the CONNACK, or `None` if the broker closed the
/// connection without one.
fn try_connect(
    broker: &TestBroker,
    source: Ipv4Addr,
    connect: Connect,
) -> Option<(RawClient, Box<ConnAck>)> {
    let mut client = RawClient::connect_from(loopback(broker), source, connect.protocol);
    let mut bytes = bytes::BytesMut::new();
    Packet::Connect(Box::new(connect))
        .encode(client.version, &mut bytes)
        .unwrap();
    // A socket closed at accept may already refuse the write.
    client.stream.write_all(&bytes).ok()?;
    match client.recv()? {
        Packet::ConnAck(ack) => Some((client, ack)),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// A CONNECT with these credentials.
fn login(v: ProtocolVersion, id: &str, user: Option<&str>, password: Option<&str>) -> Connect {
    Connect {
        username: user.map(|u| MqttString::copy_from(u).unwrap()),
        password: password.map(|p| bytes::Bytes::copy_from_slice(p.as_bytes())),
        ..connect_packet(v, id, true)
    }
}

/// The CONNACK's code as MQTT 5 names it (3.1.1's return codes mapped back).
fn code(ack: &ConnAck) -> ReasonCode {
    ack.reason_code
}

fn anonymous_clients_need_a_loopback_listener_or_an_explicit_true(v: ProtocolVersion) {
    let _guard = beside();
    for (listen, allow, accepted) in [
        ("127.0.0.1:0", None, true),
        ("0.0.0.0:0", None, false),
        ("0.0.0.0:0", Some(true), true),
        ("127.0.0.1:0", Some(false), false),
    ] {
        let broker = TestBroker::start_with(2, |c| {
            c.listen = listen.parse().unwrap();
            c.allow_anonymous = allow;
        });
        let (_client, ack) =
            try_connect(&broker, host(1), connect_packet(v, "anonymous", true)).unwrap();
        let want = if accepted {
            ReasonCode::SUCCESS
        } else {
            // 0x87 Not authorized; 3.1.1 return code 5.
            ReasonCode::NOT_AUTHORIZED
        };
        assert_eq!(
            code(&ack),
            want,
            "{listen} with COREMQ_ALLOW_ANONYMOUS={allow:?}"
        );
        if !accepted {
            stats_when(&broker, "the refusal counted", |s| {
                s.refusals.not_authorized >= 1
            });
        }
    }
}

each_version!(anonymous_clients_need_a_loopback_listener_or_an_explicit_true);

/// Wrong-password CONNECTs from `source` for `span`: how many were checked (0x86) and how many
/// were refused as banned (the connection closed at once, without a CONNACK or a check).
fn guess(broker: &TestBroker, source: Ipv4Addr, span: Duration) -> (usize, usize) {
    let (mut checked, mut banned) = (0, 0);
    let end = Instant::now() + span;
    let mut n = 0;
    while Instant::now() < end {
        n += 1;
        let connect = login(
            ProtocolVersion::V5,
            &format!("guess-{n}"),
            Some("alice"),
            Some("guess"),
        );
        match try_connect(broker, source, connect).map(|(_, ack)| code(&ack)) {
            Some(ReasonCode::BAD_USER_NAME_OR_PASSWORD) => checked += 1,
            // Banned while this CONNECT was on its way (admission checks too): 0x8A.
            None | Some(ReasonCode::BANNED) => banned += 1,
            other => panic!("a wrong password got {other:?}"),
        }
    }
    (checked, banned)
}

fn password_broker(dir: &TempDir, throttle: Option<(u32, Duration)>) -> TestBroker {
    let passwords = dir.path.join("passwords");
    std::fs::write(&passwords, format!("{ALICE}\n")).unwrap();
    TestBroker::start_with(2, |c| {
        c.password_file = Some(passwords);
        c.login_failures = throttle;
        c.login_ban = Duration::from_secs(2);
        c.login_ban_max = Duration::from_secs(4);
    })
}

#[test]
fn a_guessing_address_is_banned_and_the_others_log_in_at_once() {
    let _guard = beside();
    let dir = TempDir::new("guess");
    // Without the throttle, a guessing client gets a password check per attempt.
    let open = password_broker(&dir, None);
    let (checked, banned) = guess(&open, host(2), Duration::from_millis(700));
    eprintln!("no throttle: {checked} checked, {banned} banned in 0.7 s");
    assert!(checked > 10 && banned == 0, "{checked} / {banned}");
    drop(open);

    // 3 failures per 10 s, then a 2 s ban (doubling to 4 s).
    let broker = password_broker(&dir, Some((3, Duration::from_secs(10))));
    let alice = |source, id: &str| {
        let connect = login(ProtocolVersion::V5, id, Some("alice"), Some(ALICE_PASSWORD));
        try_connect(&broker, source, connect).map(|(_, ack)| code(&ack))
    };
    let started = Instant::now();
    let (checked, banned) = guess(&broker, host(2), Duration::from_millis(1500));
    eprintln!("throttled: {checked} checked, {banned} banned in 1.5 s");
    // Four checked (the fourth earns the ban), and a few more while the ban crossed the mesh.
    assert!((4..=8).contains(&checked), "{checked} password checks");
    assert!(banned > 0, "no attempt was refused as banned");
    // Meanwhile, from another address: in at once. From the banned one: closed at once, even
    // with the right password.
    assert_eq!(alice(host(3), "alice-3"), Some(ReasonCode::SUCCESS));
    assert_eq!(alice(host(2), "alice-2"), None);
    stats_when(&broker, "the refusals counted", |s| {
        s.refusals.login_banned >= 1 && s.refusals.bad_credentials >= 4
    });
    // After the ban (2 s), the right password from 127.0.0.2 logs in again.
    let back = eventually(
        "127.0.0.2 logs in after its ban",
        || alice(host(2), "alice-2"),
        |c| *c == Some(ReasonCode::SUCCESS),
    );
    assert_eq!(back, Some(ReasonCode::SUCCESS));
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the ban lasted its 2 s"
    );
}

#[test]
fn a_user_name_guessed_from_many_addresses_is_banned() {
    let _guard = beside();
    let dir = TempDir::new("guess-user");
    let passwords = dir.path.join("passwords");
    std::fs::write(&passwords, format!("{ALICE}\n")).unwrap();
    let broker = TestBroker::start_with(2, |c| {
        c.password_file = Some(passwords);
        c.login_failures_per_user = Some((3, Duration::from_secs(10)));
        c.login_ban = Duration::from_secs(30);
    });
    let v = ProtocolVersion::V5;
    // Four wrong passwords for alice, each from another address.
    for n in 0..4u8 {
        let connect = login(v, &format!("g{n}"), Some("alice"), Some("guess"));
        let got = try_connect(&broker, host(20 + n), connect).map(|(_, a)| code(&a));
        assert_eq!(
            got,
            Some(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            "attempt {n}"
        );
    }
    // alice is banned now, from any address, even with her password: 0x8A.
    let right = |source| {
        let connect = login(v, "alice", Some("alice"), Some(ALICE_PASSWORD));
        try_connect(&broker, source, connect).map(|(_, a)| code(&a))
    };
    eventually(
        "alice banned",
        || right(host(30)),
        |c| *c == Some(ReasonCode::BANNED),
    );
    // The addresses themselves are not banned: an anonymous try is refused as anonymous.
    let anonymous = try_connect(&broker, host(20), connect_packet(v, "anon", true));
    assert_eq!(
        anonymous.map(|(_, a)| code(&a)),
        Some(ReasonCode::NOT_AUTHORIZED)
    );
}

#[test]
fn floods_from_one_address_leave_the_others_served() {
    let _guard = beside();
    let broker = TestBroker::start_with(2, |c| {
        c.max_connections_per_address = 20;
        c.connection_rate_per_address = Some((50, Duration::from_secs(1)));
    });
    let addr = loopback(&broker);
    // Half-open flood: 200 sockets from 127.0.0.2 that never send CONNECT. At most 20 are
    // kept; the rest are closed at accept.
    let half_open: Vec<_> = (0..200)
        .map(|_| crate::common::tcp_from_address(addr, host(2)))
        .collect();
    let flooded = stats_when(&broker, "the flood refused", |s| {
        s.refusals.per_address + s.refusals.connection_rate >= 150
    });
    assert!(broker.broker.admitted_connections() <= 20, "{flooded:?}");
    // Connection flood: CONNECT after CONNECT from the same address: the rate refuses most.
    let mut refused = 0;
    for n in 0..100 {
        let connect = connect_packet(ProtocolVersion::V3_1_1, &format!("flood-{n}"), true);
        if try_connect(&broker, host(2), connect).is_none() {
            refused += 1;
        }
    }
    assert!(refused > 50, "{refused} of 100 refused");
    // Another address connects at once and its QoS 1 round trips go through, across shards.
    let v = ProtocolVersion::V5;
    let (mut sub, ack) = try_connect(
        &broker,
        host(3),
        connect_packet(v, &broker.id_on(0, "s"), true),
    )
    .unwrap();
    assert_eq!(code(&ack), ReasonCode::SUCCESS);
    subscribe(&mut sub, "flood/ok", QoS::AtLeastOnce);
    let (mut publisher, ack) = try_connect(
        &broker,
        host(4),
        connect_packet(v, &broker.id_on(1, "p"), true),
    )
    .unwrap();
    assert_eq!(code(&ack), ReasonCode::SUCCESS);
    for i in 0..20 {
        publish(
            &mut publisher,
            "flood/ok",
            format!("m{i}"),
            QoS::AtLeastOnce,
        );
        let p = sub.expect_publish();
        assert_eq!(&p.payload[..], format!("m{i}").as_bytes());
        sub.acknowledge(&p);
    }
    drop(half_open);
}

#[test]
fn a_half_open_flood_from_many_addresses_fills_only_the_connecting_cap() {
    let _guard = beside();
    let broker = TestBroker::start_with(2, |c| {
        c.max_connecting = 20;
        c.connect_timeout = Duration::from_secs(2);
    });
    let addr = loopback(&broker);
    // 60 sockets from 30 addresses, none sending CONNECT.
    let half_open: Vec<_> = (0..60)
        .map(|n| crate::common::tcp_from_address(addr, host(10 + (n % 30) as u8)))
        .collect();
    let stats = stats_when(&broker, "sockets over the cap refused", |s| {
        s.refusals.connecting >= 40
    });
    assert!(broker.broker.admitted_connections() <= 20, "{stats:?}");
    // Once the half-open sockets time out (COREMQ_CONNECT_TIMEOUT), a client gets in.
    eventually(
        "the connect timeout frees the CONNECT-phase places",
        || broker.broker.admitted_connections(),
        |&n| n == 0,
    );
    let mut client = crate::connect(&broker, ProtocolVersion::V5, "after", true);
    ping(&mut client);
    drop(half_open);
}

fn a_flapping_client_id_is_refused_for_a_while(v: ProtocolVersion) {
    let _guard = beside();
    let broker = TestBroker::start_with(2, |c| {
        c.flapping = Some((3, Duration::from_secs(30)));
        c.flapping_ban = Duration::from_secs(1);
    });
    let id = broker.id_on(1, "flapper");
    for _ in 0..3 {
        let (client, ack) = try_connect(&broker, host(1), connect_packet(v, &id, true)).unwrap();
        assert_eq!(code(&ack), ReasonCode::SUCCESS);
        client.disconnect();
    }
    // The fourth connect within the window: 0x8A Banned (3.1.1: return code 5), then a close.
    let (mut client, ack) = try_connect(&broker, host(1), connect_packet(v, &id, true)).unwrap();
    let banned = if v.is_v5() {
        ReasonCode::BANNED
    } else {
        ReasonCode::NOT_AUTHORIZED
    };
    assert_eq!(code(&ack), banned);
    assert!(client.recv().is_none(), "closed after the refusal");
    // Other client ids are not affected; after the ban the flapper is back.
    let other = crate::connect(&broker, v, &broker.id_on(1, "steady"), true);
    drop(other);
    std::thread::sleep(Duration::from_millis(1100));
    let (_client, ack) = try_connect(&broker, host(1), connect_packet(v, &id, true)).unwrap();
    assert_eq!(code(&ack), ReasonCode::SUCCESS);
    assert!(broker.broker.stats().refusals.flapping >= 1);
}

each_version!(a_flapping_client_id_is_refused_for_a_while);

/// A broker with `bans` as its ban file (in `dir`).
fn ban_broker(dir: &TempDir, bans: &str) -> (TestBroker, PathBuf) {
    let file = dir.path.join("bans");
    std::fs::write(&file, bans).unwrap();
    let path = file.clone();
    let broker = TestBroker::start_with(2, |c| c.ban_file = Some(path));
    (broker, file)
}

#[test]
fn the_ban_file_refuses_addresses_ranges_client_ids_and_user_names_and_reloads() {
    let _guard = beside();
    let dir = TempDir::new("bans");
    let (broker, file) = ban_broker(
        &dir,
        "# test bans\naddress 127.0.0.5\naddress 127.0.1.0/24\nclient_id evil\nusername mallory\n",
    );
    let v = ProtocolVersion::V5;
    let outcome = |source, id: &str, user: Option<&str>| {
        try_connect(&broker, source, login(v, id, user, None)).map(|(_, a)| code(&a))
    };
    // Addresses are closed at accept; client ids and user names get 0x8A Banned.
    let banned = Some(ReasonCode::BANNED);
    assert_eq!(outcome(host(5), "a", None), None, "address");
    let in_range = Ipv4Addr::new(127, 0, 1, 7);
    assert_eq!(outcome(in_range, "b", None), None, "range");
    assert_eq!(outcome(host(6), "evil", None), banned, "client id");
    assert_eq!(outcome(host(6), "c", Some("mallory")), banned, "user name");
    let fine = Some(ReasonCode::SUCCESS);
    assert_eq!(outcome(host(6), "d", Some("alice")), fine);
    assert_eq!(outcome(Ipv4Addr::new(127, 0, 2, 7), "e", None), fine);
    stats_when(&broker, "the refusals counted", |s| s.refusals.banned >= 4);

    // Reload (SIGHUP) without the single address: it may connect again.
    std::fs::write(&file, "client_id evil\n").unwrap();
    broker.broker.reload().expect("the new list loads");
    assert_eq!(outcome(host(5), "a", None), Some(ReasonCode::SUCCESS));
    assert_eq!(outcome(host(6), "evil", None), banned);

    // A malformed list is refused with file, line and reason; the old one stays.
    std::fs::write(&file, "client_id evil\naddress 300.1.2.3\n").unwrap();
    let err = broker.broker.reload().unwrap_err().to_string();
    assert!(
        err.contains("bans:2:") && err.contains("not an IP address"),
        "{err}"
    );
    assert_eq!(outcome(host(6), "evil", None), banned);
    assert_eq!(outcome(host(5), "a", None), Some(ReasonCode::SUCCESS));
}

#[test]
fn a_malformed_ban_file_stops_start_up_with_file_line_and_reason() {
    let dir = TempDir::new("bad-bans");
    let file = dir.path.join("bans");
    std::fs::write(&file, "address 10.0.0.0/8\nhost evil\n").unwrap();
    let config = coremq::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        shards: 1,
        pin: false,
        ban_file: Some(file),
        ..coremq::Config::default()
    };
    let err = match coremq::Broker::start(config) {
        Ok(_) => panic!("a broker started with a malformed ban file"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("bans:2:") && err.contains("unknown kind"),
        "{err}"
    );
}
