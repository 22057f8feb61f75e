//! The TLS listener (COREMQ_TLS_LISTEN) with the clients a user would point at it: rumqttc
//! (MQTT 5, rustls) and Mosquitto's `mosquitto_sub` / `mosquitto_pub` with `--cafile`, and with
//! `--cert` / `--key` for mutual TLS; handshakes a client must refuse (wrong CA, wrong host name)
//! and the broker must refuse (expired, unknown or missing client certificate); the certificate's
//! common name as the ACL's user name; certificate rotation on reload; TLS connections parking
//! and moving between shards like plain ones. Certificates are made in the test (`pki`).

use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::{PubAckReason, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::{TlsConfiguration, Transport};

use crate::common::pki::{client_config, tls_mqtt_connect, Ca, Issued, Pki, Validity};
use crate::common::{scrape_until, TestBroker, PATIENCE};
use crate::rumqttc_v5::Peer;
use crate::tools::{lines_until, mosquitto_pub, mosquitto_sub, try_mosquitto_pub};

/// A broker with a TLS listener on an ephemeral port using `server`'s certificate; `tweak`
/// adjusts the rest.
fn tls_broker(
    shards: usize,
    server: &Issued,
    tweak: impl FnOnce(&mut coremq::Config),
) -> TestBroker {
    let (cert, key) = (server.cert.clone(), server.key.clone());
    TestBroker::start_with(shards, move |c| {
        c.tls_listen = Some("127.0.0.1:0".parse().unwrap());
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        tweak(c);
    })
}

fn tls_port(broker: &TestBroker) -> u16 {
    broker.broker.tls_addr().expect("a TLS listener").port()
}

/// Largest packet the test clients take (rumqttc's default is 10 KiB; messages here span
/// several TLS records).
const BIG: u32 = 1 << 20;

/// An MQTT 5 rumqttc client over TLS to the broker's TLS listener, trusting `ca`.
fn tls_peer(broker: &TestBroker, id: &str, ca: &Ca, client: Option<&Issued>) -> Peer {
    let config = client_config(ca, client);
    Peer::connect_to(tls_port(broker), id, |o| {
        o.set_max_packet_size(Some(BIG));
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    })
}

/// TLS clients on both shards and a plain one: each QoS crosses shards and listeners, in both
/// directions. The accepting shard is the kernel's choice, so TLS connections are handed to
/// their home shard with their TLS session as often as not.
#[test]
fn rumqttc_over_tls_meets_plain_clients() {
    let pki = Pki::new("tls-basic");
    let ca = pki.ca("ca");
    let server = pki.server(&ca, "server");
    let broker = tls_broker(2, &server, |_| {});
    let sub = tls_peer(&broker, &broker.id_on(0, "tls-sub"), &ca, None);
    let publ = tls_peer(&broker, &broker.id_on(1, "tls-pub"), &ca, None);
    let plain = Peer::connect_to(broker.port(), &broker.id_on(1, "plain"), |o| {
        o.set_max_packet_size(Some(BIG));
    });
    assert_eq!(
        sub.subscribe(&[("t/#", QoS::ExactlyOnce)]),
        vec![SubscribeReasonCode::Success(QoS::ExactlyOnce)]
    );
    assert_eq!(
        plain.subscribe(&[("t/#", QoS::ExactlyOnce)]),
        vec![SubscribeReasonCode::Success(QoS::ExactlyOnce)]
    );
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let payload = vec![i as u8; 1000 + 30_000 * i];
        publ.client
            .publish(format!("t/{i}"), qos, false, payload.clone())
            .unwrap();
        for peer in [&sub, &plain] {
            let p = peer.next_publish();
            assert_eq!(
                (p.topic.as_ref(), p.qos),
                (format!("t/{i}").as_bytes(), qos)
            );
            assert_eq!(p.payload.as_ref(), &payload[..]);
        }
    }
    // And from the plain listener to the TLS subscriber.
    plain
        .client
        .publish("t/plain", QoS::AtLeastOnce, false, "x")
        .unwrap();
    assert_eq!(sub.next_publish().topic.as_ref(), b"t/plain");
}

/// mosquitto_sub and mosquitto_pub with `--cafile`: the README's TLS commands.
#[test]
fn mosquitto_clients_with_cafile() {
    let pki = Pki::new("tls-mosq");
    let ca = pki.ca("ca");
    let server = pki.server(&ca, "server");
    let broker = tls_broker(2, &server, |_| {});
    let port = tls_port(&broker);
    let cafile = ca.pem.to_str().unwrap();
    let (_sub, lines) = mosquitto_sub(port, &["--cafile", cafile, "-t", "m/#"]);
    mosquitto_pub(port, "311", "m/1", "over tls", &["--cafile", cafile]);
    mosquitto_pub(port, "5", "m/2", "v5 over tls", &["--cafile", cafile]);
    assert_eq!(
        lines_until(&lines, "v5 over tls"),
        vec!["over tls".to_owned(), "v5 over tls".to_owned()]
    );
    // A CA that did not sign the server's certificate: mosquitto_pub refuses the broker.
    let other = pki.ca("other");
    let wrong = other.pem.to_str().unwrap();
    assert!(!try_mosquitto_pub(
        port,
        "311",
        "m/3",
        "no",
        &["--cafile", wrong]
    ));
    // Plain MQTT on the TLS port: no CONNACK.
    assert!(!try_mosquitto_pub(port, "311", "m/4", "no", &[]));
}

/// Mutual TLS with mosquitto_pub `--cert/--key`: a certificate from the client CA is let in;
/// none, an expired one, or one from another CA is refused in the handshake.
#[test]
fn mosquitto_clients_with_client_certificates() {
    let pki = Pki::new("tls-mtls");
    let ca = pki.ca("ca");
    let server = pki.server(&ca, "server");
    let good = pki.client(&ca, "good", Some("device-1"), Validity::Current);
    let expired = pki.client(&ca, "expired", Some("device-2"), Validity::Expired);
    let stranger_ca = pki.ca("stranger-ca");
    let stranger = pki.client(
        &stranger_ca,
        "stranger",
        Some("device-3"),
        Validity::Current,
    );
    let client_ca = ca.pem.clone();
    let broker = tls_broker(2, &server, |c| {
        c.tls_client_ca = Some(client_ca);
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    });
    let port = tls_port(&broker);
    let cafile = ca.pem.to_str().unwrap();
    let with = |c: &Issued| {
        let (cert, key) = (c.cert.to_str().unwrap(), c.key.to_str().unwrap());
        vec!["--cafile", cafile, "--cert", cert, "--key", key]
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let good_args = with(&good);
    let (_sub, lines) = mosquitto_sub(port, &[&args(&good_args)[..], &["-t", "d/#"]].concat());
    assert!(try_mosquitto_pub(
        port,
        "311",
        "d/1",
        "signed",
        &args(&good_args)
    ));
    assert_eq!(lines_until(&lines, "signed"), vec!["signed".to_owned()]);
    assert!(!try_mosquitto_pub(
        port,
        "311",
        "d/2",
        "none",
        &["--cafile", cafile]
    ));
    assert!(!try_mosquitto_pub(
        port,
        "311",
        "d/3",
        "old",
        &args(&with(&expired))
    ));
    assert!(!try_mosquitto_pub(
        port,
        "311",
        "d/4",
        "stranger",
        &args(&with(&stranger))
    ));
    // The same cases with rustls: the broker's refusal reaches the client.
    let addr = broker.broker.tls_addr().unwrap();
    assert_eq!(
        tls_mqtt_connect(addr, client_config(&ca, Some(&good)), "127.0.0.1", "ok"),
        Ok(0)
    );
    for (case, client) in [
        ("expired", Some(&expired)),
        ("stranger", Some(&stranger)),
        ("none", None),
    ] {
        let got = tls_mqtt_connect(addr, client_config(&ca, client), "127.0.0.1", case);
        assert!(got.is_err(), "{case}: {got:?}");
    }
    // Per listener: 6 refused handshakes (3 mosquitto_pub, 3 rustls) among the connections.
    let name = "coremq_listener_connections_total";
    let failed = [("listener", "tls"), ("result", "layer_failed")];
    let scrape = scrape_until(&broker, "6 failed handshakes", |s| {
        s.sum(name, &failed) >= 6.0
    });
    let accepted = scrape.sum(name, &[("listener", "tls"), ("result", "accepted")]);
    assert!(accepted >= 9.0, "{accepted} TLS connections accepted");
    assert_eq!(
        scrape.sum(name, &[("listener", "mqtt"), ("result", "layer_failed")]),
        0.0
    );
}

/// The client's checks of the broker: a CA that did not sign the certificate, and a host name
/// the certificate does not name, fail the handshake.
#[test]
fn clients_refuse_a_wrong_ca_or_host_name() {
    let pki = Pki::new("tls-names");
    let ca = pki.ca("ca");
    let server = pki.server(&ca, "server");
    let broker = tls_broker(1, &server, |_| {});
    let addr = broker.broker.tls_addr().unwrap();
    let trusted = client_config(&ca, None);
    assert_eq!(
        tls_mqtt_connect(addr, trusted.clone(), "localhost", "a"),
        Ok(0)
    );
    assert_eq!(
        tls_mqtt_connect(addr, trusted.clone(), "127.0.0.1", "b"),
        Ok(0)
    );
    let wrong_name = tls_mqtt_connect(addr, trusted, "broker.example", "c");
    assert!(
        wrong_name
            .as_ref()
            .is_err_and(|e| e.contains("not valid for name")),
        "{wrong_name:?}"
    );
    let other = pki.ca("other");
    let wrong_ca = tls_mqtt_connect(addr, client_config(&other, None), "localhost", "d");
    assert!(
        wrong_ca
            .as_ref()
            .is_err_and(|e| e.contains("UnknownIssuer")),
        "{wrong_ca:?}"
    );
}

/// COREMQ_TLS_IDENTITY_AS_USERNAME: the certificate's CN is the user name the ACL sees, whatever
/// CONNECT says; with optional client certificates, a client without one is refused 0x87.
#[test]
fn certificate_common_name_is_the_acl_user() {
    let pki = Pki::new("tls-identity");
    let ca = pki.ca("ca");
    let server = pki.server(&ca, "server");
    let sensor = pki.client(&ca, "sensor", Some("sensor-1"), Validity::Current);
    let nameless = pki.client(&ca, "nameless", None, Validity::Current);
    let acl = pki.dir.path.join("acl");
    std::fs::write(&acl, "user sensor-1\ntopic readwrite sensors/sensor-1/#\n").unwrap();
    let client_ca = ca.pem.clone();
    let broker = tls_broker(2, &server, |c| {
        c.tls_client_ca = Some(client_ca);
        c.tls_client_auth = coremq::config::ClientAuth::Optional;
        c.tls_identity_as_username = true;
        c.acl_file = Some(acl);
        c.allow_anonymous = Some(true);
    });
    let config = client_config(&ca, Some(&sensor));
    let peer = Peer::connect_to(tls_port(&broker), &broker.id_on(1, "s1"), |o| {
        // What CONNECT says is not what counts.
        o.set_credentials("admin", "guess");
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    });
    assert_eq!(
        peer.subscribe(&[
            ("sensors/sensor-1/#", QoS::AtLeastOnce),
            ("sensors/other/#", QoS::AtLeastOnce)
        ]),
        vec![
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::NotAuthorized
        ]
    );
    peer.client
        .publish("sensors/sensor-1/t", QoS::AtLeastOnce, false, "21")
        .unwrap();
    assert_eq!(peer.next_publish().payload.as_ref(), b"21");
    peer.client
        .publish("sensors/other/t", QoS::AtLeastOnce, false, "22")
        .unwrap();
    let reason = peer.expect(|p| match p {
        rumqttc::v5::mqttbytes::v5::Packet::PubAck(a) if a.reason != PubAckReason::Success => {
            Some(a.reason)
        }
        _ => None,
    });
    assert_eq!(reason, PubAckReason::NotAuthorized);
    // No certificate, or one without a CN: not authorized (3.1.1 return code 5).
    let addr = broker.broker.tls_addr().unwrap();
    for (case, client) in [("none", None), ("nameless", Some(&nameless))] {
        let got = tls_mqtt_connect(addr, client_config(&ca, client), "localhost", case);
        assert_eq!(got, Ok(5), "{case}");
    }
}

/// Rotation: new certificate files and a reload (what SIGHUP does) serve new connections with
/// the new certificate while a connection from before keeps working; files that do not load
/// are refused and the certificate in use stays.
#[test]
fn reload_rotates_the_certificate() {
    let pki = Pki::new("tls-reload");
    let old_ca = pki.ca("old-ca");
    let old = pki.server(&old_ca, "server");
    let broker = tls_broker(2, &old, |_| {});
    let addr = broker.broker.tls_addr().unwrap();
    let before = tls_peer(&broker, &broker.id_on(0, "before"), &old_ca, None);
    before.subscribe(&[("r/#", QoS::AtLeastOnce)]);

    let new_ca = pki.ca("new-ca");
    let new = pki.server(&new_ca, "new-server");
    std::fs::copy(&new.cert, &old.cert).unwrap();
    std::fs::copy(&new.key, &old.key).unwrap();
    assert_eq!(broker.broker.reload_tls(), Ok(true));
    assert_eq!(
        tls_mqtt_connect(addr, client_config(&new_ca, None), "localhost", "n"),
        Ok(0)
    );
    let stale = tls_mqtt_connect(addr, client_config(&old_ca, None), "localhost", "o");
    assert!(stale.is_err(), "the old certificate is gone: {stale:?}");

    std::fs::write(&old.cert, "not a certificate\n").unwrap();
    let refused = broker.broker.reload_tls();
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("COREMQ_TLS_CERT")),
        "{refused:?}"
    );
    assert_eq!(
        tls_mqtt_connect(addr, client_config(&new_ca, None), "localhost", "n2"),
        Ok(0)
    );

    let after = tls_peer(&broker, &broker.id_on(1, "after"), &new_ca, None);
    after
        .client
        .publish("r/1", QoS::AtLeastOnce, false, "still")
        .unwrap();
    assert_eq!(before.next_publish().payload.as_ref(), b"still");
}

/// Idle TLS connections park like plain ones (their TLS session waits with the socket) and
/// wake for a delivery or for the client's next packet.
#[test]
fn tls_connections_park_and_wake() {
    let pki = Pki::new("tls-park");
    let ca = pki.ca("ca");
    let server = pki.server(&ca, "server");
    let broker = tls_broker(2, &server, |c| {
        c.park_idle_after = Duration::from_millis(50)
    });
    let sub = tls_peer(&broker, &broker.id_on(0, "psub"), &ca, None);
    sub.subscribe(&[("park/#", QoS::AtLeastOnce)]);
    let publ = tls_peer(&broker, &broker.id_on(1, "ppub"), &ca, None);
    wait_until(
        || broker.broker.stats().parked >= 2,
        "both TLS connections parked",
    );
    publ.client
        .publish("park/1", QoS::AtLeastOnce, false, "woken")
        .unwrap();
    assert_eq!(sub.next_publish().payload.as_ref(), b"woken");
    wait_until(|| broker.broker.stats().parked >= 2, "parked again");
    publ.client
        .publish("park/2", QoS::ExactlyOnce, false, "again")
        .unwrap();
    assert_eq!(sub.next_publish().payload.as_ref(), b"again");
}

fn wait_until(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Settings that cannot work stop start-up with the flag named: TLS without a certificate, a
/// certificate file that is not one, the certificate's CN as user name without a client CA.
#[test]
fn tls_settings_that_cannot_work_stop_start_up() {
    let pki = Pki::new("tls-bad-settings");
    let ca = pki.ca("ca");
    let server = pki.server(&ca, "server");
    let garbage = pki.dir.path.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let start = |tweak: &dyn Fn(&mut coremq::Config)| {
        let mut c = coremq::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls_listen: Some("127.0.0.1:0".parse().unwrap()),
            tls_cert: Some(server.cert.clone()),
            tls_key: Some(server.key.clone()),
            shards: 1,
            pin: false,
            ..coremq::Config::default()
        };
        tweak(&mut c);
        match coremq::Broker::start(c) {
            Ok(_) => panic!("started"),
            Err(e) => e.to_string(),
        }
    };
    let why = start(&|c| c.tls_cert = None);
    assert!(why.contains("COREMQ_TLS_CERT"), "{why}");
    let why = start(&|c| c.tls_cert = Some(garbage.clone()));
    assert!(
        why.contains("COREMQ_TLS_CERT") && why.contains("garbage.pem"),
        "{why}"
    );
    let why = start(&|c| c.tls_identity_as_username = true);
    assert!(why.contains("COREMQ_TLS_CLIENT_CA"), "{why}");
}

/// COREMQ_TLS_CRL: a client certificate the CA revoked fails the handshake while others get in;
/// a reload with a new list revokes another one without a restart.
#[test]
fn revoked_client_certificates_are_refused() {
    let pki = Pki::new("tls-crl");
    let ca = pki.ca("ca");
    let server = pki.server(&ca, "server");
    let kept = pki.client(&ca, "kept", Some("kept"), Validity::Current);
    let lost = pki.client(&ca, "lost", Some("lost"), Validity::Current);
    let crl = pki.crl(&ca, "crl", &[&lost]);
    let (client_ca, list) = (ca.pem.clone(), crl.clone());
    let broker = tls_broker(2, &server, |c| {
        c.tls_client_ca = Some(client_ca);
        c.tls_crl = Some(list);
    });
    let addr = broker.broker.tls_addr().unwrap();
    let connect =
        |c: &Issued, id: &str| tls_mqtt_connect(addr, client_config(&ca, Some(c)), "localhost", id);
    assert_eq!(connect(&kept, "kept-1"), Ok(0));
    let revoked = connect(&lost, "lost-1");
    assert!(
        revoked.is_err(),
        "a revoked certificate got in: {revoked:?}"
    );
    // The next list revokes both; a reload (SIGHUP) applies it to new connections.
    let both = pki.crl(&ca, "crl2", &[&lost, &kept]);
    std::fs::copy(&both, &crl).unwrap();
    assert_eq!(broker.broker.reload_tls(), Ok(true));
    assert!(connect(&kept, "kept-2").is_err());
}
