//! §3.3.2.3.3 Message Expiry Interval (MQTT 5): expired messages are not delivered, forwarded
//! ones carry what is left of the interval.
//!
//! Placement and timing as for every MQTT 5 case (see `v5`).

use std::thread;
use std::time::Duration;

use coremq::protocol::{Publish, QoS, ReasonCode, SubscriptionOptions};

use crate::common::TestBroker;
use crate::v5::*;
use crate::{connect, connect_with, expect_message, ping, publish, subscribe, will};

// §3.3.2.3.3 Message Expiry Interval.

#[test]
fn mqtt_3_3_2_5_expired_messages_are_not_delivered() {
    let broker = TestBroker::start(2);
    let id = broker.id_on(0, "offline");
    let mut sub = connect_with(&broker, session_connect(&id, true, 300)).0;
    subscribe(&mut sub, "exp/#", QoS::AtLeastOnce);
    sub.disconnect();
    let mut live = connect(&broker, V5, &broker.id_on(0, "live"), true);
    subscribe(&mut live, "exp/will", QoS::AtLeastOnce);

    // Queued for the offline session: a message and a retained message expiring in 1 s...
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    send_publish(&mut publisher, expiring("exp/queued", "queued", 1, false));
    send_publish(
        &mut publisher,
        expiring("exp/retained", "retained", 1, true),
    );
    // ...and a retained will expiring 1 s after it is published (MQTT 5 §3.1.3.2.4).
    let mut with_will = connect_v5(&broker.id_on(1, "mortal"), |_| {});
    let mut last_will = will("exp/will", "will", QoS::AtLeastOnce, true);
    last_will.properties.message.message_expiry_interval = Some(1);
    with_will.will = Some(last_will);
    break_connection(connect_with(&broker, with_will).0);
    let p = expect_message(&mut live, "exp/will", "will");
    live.acknowledge(&p);
    // Then a marker that does not expire.
    publish(&mut publisher, "exp/marker", "marker", QoS::AtLeastOnce);
    thread::sleep(Duration::from_millis(2500));

    let (mut sub, ack) = connect_with(&broker, session_connect(&id, false, 300));
    assert!(ack.session_present);
    let p = expect_message(&mut sub, "exp/marker", "marker");
    assert_eq!(p.properties.message.message_expiry_interval, None);
    sub.acknowledge(&p);
    // Nor are expired retained messages sent to a new subscription.
    let qos1 = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    let codes = subscribe_with(
        &mut sub,
        &[("exp/retained", qos1), ("exp/will", qos1)],
        None,
    );
    assert_eq!(codes, [ReasonCode::GRANTED_QOS_1; 2]);
    ping(&mut sub);
}

#[test]
fn mqtt_3_3_2_6_forwarded_messages_carry_the_remaining_expiry_interval() {
    let broker = TestBroker::start(2);
    let id = broker.id_on(0, "offline");
    let mut offline = connect_with(&broker, session_connect(&id, true, 300)).0;
    subscribe(&mut offline, "rem/#", QoS::AtLeastOnce);
    offline.disconnect();
    let mut live = connect(&broker, V5, &broker.id_on(0, "live"), true);
    subscribe(&mut live, "rem/#", QoS::AtLeastOnce);
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    send_publish(&mut publisher, expiring("rem/a", "a", 60, true));
    publish(&mut publisher, "rem/plain", "no expiry", QoS::AtLeastOnce);

    let remaining = |p: &Publish| p.properties.message.message_expiry_interval;
    let p = expect_message(&mut live, "rem/a", "a");
    assert!(matches!(remaining(&p), Some(1..=60)), "{p:?}");
    live.acknowledge(&p);
    let p = expect_message(&mut live, "rem/plain", "no expiry");
    assert_eq!(remaining(&p), None);
    live.acknowledge(&p);

    // After waiting in the server, the queued copy and the retained one say less than 60 s.
    thread::sleep(Duration::from_millis(1500));
    let (mut offline, _) = connect_with(&broker, session_connect(&id, false, 300));
    let p = expect_message(&mut offline, "rem/a", "a");
    assert!(matches!(remaining(&p), Some(1..=59)), "{p:?}");
    offline.acknowledge(&p);
    let p = expect_message(&mut offline, "rem/plain", "no expiry");
    offline.acknowledge(&p);
    let mut late = connect(&broker, V5, &broker.id_on(0, "late"), true);
    subscribe(&mut late, "rem/a", QoS::AtLeastOnce);
    let p = expect_message(&mut late, "rem/a", "a");
    assert!(p.retain);
    assert!(matches!(remaining(&p), Some(1..=59)), "{p:?}");
    late.acknowledge(&p);
}
