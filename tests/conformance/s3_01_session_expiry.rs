//! §3.1.2.11.2 Session Expiry Interval (MQTT 5), and changing it on DISCONNECT (§3.14.2.2.2).
//!
//! Placement and timing as for every MQTT 5 case (see `v5`).

use std::thread;
use std::time::Duration;

use coremq::protocol::{Disconnect, DisconnectProperties, Packet, QoS, ReasonCode};

use crate::common::TestBroker;
use crate::v5::*;
use crate::{connect, connect_with, expect_message, publish, subscribe};

// §3.1.2.11.2 Session Expiry Interval, §3.14.2.2.2 on DISCONNECT.

#[test]
fn mqtt_3_1_2_11_2_session_expires_after_the_interval() {
    let broker = TestBroker::start(2);
    let short = broker.id_on(0, "short");
    let forever = broker.id_on(0, "forever");
    for (id, expiry) in [(&short, 1), (&forever, u32::MAX)] {
        let mut client = connect_with(&broker, session_connect(id, true, expiry)).0;
        subscribe(&mut client, "expiry/#", QoS::AtLeastOnce);
        client.disconnect();
    }
    thread::sleep(Duration::from_millis(2500));

    // The 1 s session ended, subscriptions and all; 0xFFFFFFFF never expires.
    let (mut short, ack) = connect_with(&broker, session_connect(&short, false, 300));
    assert!(!ack.session_present, "the 1 s session expired");
    let (mut forever, ack) = connect_with(&broker, session_connect(&forever, false, u32::MAX));
    assert!(ack.session_present, "a 0xFFFFFFFF session never expires");
    subscribe(&mut short, "marker", QoS::AtLeastOnce);
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    publish(&mut publisher, "expiry/a", "kept", QoS::AtLeastOnce);
    publish(&mut publisher, "marker", "marker", QoS::AtLeastOnce);
    let p = expect_message(&mut forever, "expiry/a", "kept");
    forever.acknowledge(&p);
    // Had the expired session's subscription survived, "expiry/a" would come first.
    let p = expect_message(&mut short, "marker", "marker");
    short.acknowledge(&p);
}

#[test]
fn mqtt_3_14_2_2_2_disconnect_may_change_the_session_expiry_interval() {
    let broker = TestBroker::start(2);
    let id = broker.id_on(0, "shortened");
    let (mut client, _) = connect_with(&broker, session_connect(&id, true, 300));
    client.send(&Packet::Disconnect(Disconnect {
        reason_code: ReasonCode::NORMAL_DISCONNECTION,
        properties: DisconnectProperties {
            session_expiry_interval: Some(0),
            ..DisconnectProperties::default()
        },
    }));
    assert_eq!(client.expect_close(), []);
    // Expiry 0 from the DISCONNECT: the session ended with the connection.
    let (_client, ack) = connect_with(&broker, session_connect(&id, false, 300));
    assert!(!ack.session_present);
}

#[test]
fn mqtt_3_14_2_2_2_disconnect_setting_an_expiry_after_0_is_a_protocol_error() {
    let broker = TestBroker::start(2);
    let mut client = connect_with(&broker, connect_v5(&broker.id_on(1, "zero"), |_| {})).0;
    client.send(&Packet::Disconnect(Disconnect {
        reason_code: ReasonCode::NORMAL_DISCONNECTION,
        properties: DisconnectProperties {
            session_expiry_interval: Some(60),
            ..DisconnectProperties::default()
        },
    }));
    client.expect_disconnect(ReasonCode::PROTOCOL_ERROR);
}
