//! §3.8.3.1 Subscription Options (No Local, Retain As Published, Retain Handling) and
//! §3.8.2.1.2 Subscription Identifier (MQTT 5).
//!
//! Placement and timing as for every MQTT 5 case (see `v5`).

use coremq::protocol::{Publish, QoS, ReasonCode, RetainHandling, SubscriptionOptions};

use crate::common::{RawClient, TestBroker};
use crate::v5::*;
use crate::{connect, expect_message, ping, publish, subscribe};

// §3.8.3.1 Subscription Options.

#[test]
fn mqtt_3_8_3_3_no_local_does_not_echo_own_messages() {
    let broker = TestBroker::start(2);
    let mut me = connect(&broker, V5, &broker.id_on(0, "me"), true);
    let no_local = SubscriptionOptions {
        no_local: true,
        ..SubscriptionOptions::with_qos(QoS::AtLeastOnce)
    };
    subscribe_options(&mut me, "nl/#", no_local);
    let mut other = connect(&broker, V5, &broker.id_on(1, "other"), true);
    subscribe(&mut other, "nl/#", QoS::AtMostOnce);

    // An echo would be delivered before the PUBACK, which `publish` expects first.
    publish(&mut me, "nl/mine", "mine", QoS::AtLeastOnce);
    expect_message(&mut other, "nl/mine", "mine");
    // Messages from other clients still arrive; without No Local, a client gets its own.
    publish(&mut other, "nl/theirs", "theirs", QoS::AtMostOnce);
    expect_message(&mut other, "nl/theirs", "theirs");
    let p = expect_message(&mut me, "nl/theirs", "theirs");
    assert_eq!(p.qos, QoS::AtMostOnce);
}

#[test]
fn mqtt_3_3_1_13_retain_as_published_keeps_the_retain_flag() {
    let broker = TestBroker::start(2);
    let mut as_published = connect(&broker, V5, &broker.id_on(0, "rap"), true);
    let rap = SubscriptionOptions {
        retain_as_published: true,
        ..SubscriptionOptions::with_qos(QoS::AtLeastOnce)
    };
    subscribe_options(&mut as_published, "rap/#", rap);
    let mut plain = connect(&broker, V5, &broker.id_on(0, "plain"), true);
    subscribe(&mut plain, "rap/#", QoS::AtLeastOnce);
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    let retained = Publish {
        retain: true,
        ..message("rap/retained", "retained", QoS::AtLeastOnce)
    };
    send_publish(&mut publisher, retained);
    publish(&mut publisher, "rap/live", "live", QoS::AtLeastOnce);

    for (client, retain) in [(&mut as_published, true), (&mut plain, false)] {
        // [MQTT-3.3.1-13] the publisher's flag; [MQTT-3.3.1-12] 0 without the option.
        let p = expect_message(client, "rap/retained", "retained");
        assert_eq!(p.retain, retain);
        client.acknowledge(&p);
        let p = expect_message(client, "rap/live", "live");
        assert!(!p.retain);
        client.acknowledge(&p);
    }
}

/// A retained message on `rh/t`, published from shard 1 (its PUBACK waits until every shard
/// stores it), and a client on shard 0 to subscribe with each Retain Handling.
fn retained_and_subscriber(broker: &TestBroker) -> RawClient {
    let mut publisher = connect(broker, V5, &broker.id_on(1, "pub"), true);
    let retained = Publish {
        retain: true,
        ..message("rh/t", "retained", QoS::AtLeastOnce)
    };
    send_publish(&mut publisher, retained);
    connect(broker, V5, &broker.id_on(0, "sub"), true)
}

fn retain_handling(handling: RetainHandling) -> SubscriptionOptions {
    SubscriptionOptions {
        retain_handling: handling,
        ..SubscriptionOptions::with_qos(QoS::AtLeastOnce)
    }
}

/// The retained message must follow the SUBACK just received.
fn expect_retained(client: &mut RawClient) {
    let p = expect_message(client, "rh/t", "retained");
    assert!(p.retain);
    client.acknowledge(&p);
}

#[test]
fn mqtt_3_3_1_9_retain_handling_0_sends_retained_messages_at_every_subscribe() {
    let broker = TestBroker::start(2);
    let mut sub = retained_and_subscriber(&broker);
    let options = retain_handling(RetainHandling::SendAtSubscribe);
    subscribe_options(&mut sub, "rh/#", options);
    expect_retained(&mut sub);
    // [MQTT-3.8.4-4] again when the subscription is replaced.
    subscribe_options(&mut sub, "rh/#", options);
    expect_retained(&mut sub);
}

#[test]
fn mqtt_3_3_1_10_retain_handling_1_sends_retained_messages_for_a_new_subscription_only() {
    let broker = TestBroker::start(2);
    let mut sub = retained_and_subscriber(&broker);
    let options = retain_handling(RetainHandling::SendIfNew);
    subscribe_options(&mut sub, "rh/#", options);
    expect_retained(&mut sub);
    subscribe_options(&mut sub, "rh/#", options);
    // Retained messages follow the SUBACK at once; the PINGRESP comes first when there are none.
    ping(&mut sub);
}

#[test]
fn mqtt_3_3_1_11_retain_handling_2_never_sends_retained_messages() {
    let broker = TestBroker::start(2);
    let mut sub = retained_and_subscriber(&broker);
    subscribe_options(&mut sub, "rh/#", retain_handling(RetainHandling::DoNotSend));
    ping(&mut sub);
    // The subscription itself works.
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "live"), true);
    publish(&mut publisher, "rh/t", "live", QoS::AtLeastOnce);
    let p = expect_message(&mut sub, "rh/t", "live");
    assert!(!p.retain);
    sub.acknowledge(&p);
}

// §3.8.2.1.2 Subscription Identifier.

#[test]
fn mqtt_3_3_4_3_subscription_identifier_is_sent_with_every_delivery() {
    let broker = TestBroker::start(2);
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    let retained = Publish {
        retain: true,
        ..message("sid/retained", "retained", QoS::AtLeastOnce)
    };
    send_publish(&mut publisher, retained);
    let mut sub = connect(&broker, V5, &broker.id_on(0, "sub"), true);
    let qos1 = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    assert_eq!(
        subscribe_with(&mut sub, &[("sid/+", qos1)], Some(7)),
        [ReasonCode::GRANTED_QOS_1]
    );
    // The retained message sent on subscribe, and every live one, carry the identifier.
    let p = expect_message(&mut sub, "sid/retained", "retained");
    assert_eq!(subscription_ids(&p), [7]);
    sub.acknowledge(&p);
    subscribe(&mut sub, "plain/+", QoS::AtLeastOnce);
    publish(&mut publisher, "sid/a", "qos 1", QoS::AtLeastOnce);
    publish(&mut publisher, "sid/a", "qos 0", QoS::AtMostOnce);
    publish(&mut publisher, "plain/a", "no id", QoS::AtLeastOnce);
    for payload in ["qos 1", "qos 0"] {
        let p = expect_message(&mut sub, "sid/a", payload);
        assert_eq!(subscription_ids(&p), [7], "{payload}");
        sub.acknowledge(&p);
    }
    let p = expect_message(&mut sub, "plain/a", "no id");
    assert_eq!(subscription_ids(&p), Vec::<u32>::new());
    sub.acknowledge(&p);

    // [MQTT-3.8.4-3] subscribing again replaces the identifier (retained: Retain Handling 2).
    let again = SubscriptionOptions {
        retain_handling: RetainHandling::DoNotSend,
        ..qos1
    };
    subscribe_with(&mut sub, &[("sid/+", again)], Some(8));
    publish(&mut publisher, "sid/a", "new id", QoS::AtLeastOnce);
    let p = expect_message(&mut sub, "sid/a", "new id");
    assert_eq!(subscription_ids(&p), [8]);
    sub.acknowledge(&p);
}

#[test]
fn mqtt_3_3_4_4_overlapping_subscriptions_get_one_delivery_with_every_identifier() {
    let broker = TestBroker::start(2);
    let mut sub = connect(&broker, V5, &broker.id_on(0, "sub"), true);
    let options = SubscriptionOptions::with_qos;
    subscribe_with(&mut sub, &[("ov/#", options(QoS::AtMostOnce))], Some(1));
    subscribe_with(&mut sub, &[("ov/+", options(QoS::ExactlyOnce))], Some(2));
    subscribe_with(&mut sub, &[("ov/x", options(QoS::AtLeastOnce))], None);
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    publish(&mut publisher, "ov/x", "overlap", QoS::ExactlyOnce);
    publish(&mut publisher, "ov/x", "marker", QoS::AtMostOnce);

    // One copy, at the highest QoS granted [MQTT-3.3.4-2], with both identifiers; the marker
    // comes next, so there was no second copy.
    let p = expect_message(&mut sub, "ov/x", "overlap");
    assert_eq!(p.qos, QoS::ExactlyOnce);
    assert_eq!(subscription_ids(&p), [1, 2]);
    let marker = expect_message(&mut sub, "ov/x", "marker");
    assert_eq!(subscription_ids(&marker), [1, 2]);
    sub.acknowledge(&p);
}
