//! Observability (COREMQ_METRICS_LISTEN, COREMQ_SYS_INTERVAL): known traffic at each QoS, from a
//! publisher on shard 0 to subscribers on both shards, with known drops, and the figures the
//! broker then shows — on `/metrics` (checked by Prometheus's own `promtool`) and on the
//! `$SYS/broker/...` topics.
//!
//! `promtool` comes with Debian's `prometheus` package, which `scripts/test` (the README's test
//! command) installs; without it the format test fails and names that script.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coremq::protocol::{Packet, ProtocolVersion, PublishAck, QoS, ReasonCode};
use coremq::{Broker, Config};

use crate::common::{
    connect, http_get, packet_id, publish, publish_packet, scrape_until, subscribe, RawClient,
    Scrape, TestBroker, PATIENCE,
};

/// A broker with the metrics endpoint on an ephemeral port and `$SYS` every second.
fn observed_broker() -> TestBroker {
    TestBroker::start_with(2, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.sys_interval = Duration::from_secs(1);
    })
}

/// Messages the publisher sends to `t/x` at QoS 0, 1 and 2.
const SENT: [usize; 3] = [5, 4, 3];

/// The traffic the tests check: a subscriber on shard 1 (MQTT 5, `t/#` at QoS 2) gets every
/// message; an offline MQTT 3.1.1 session on shard 0 (`t/#` at QoS 1) queues the QoS 1 and 2
/// ones and drops the QoS 0 ones; one QoS 1 PUBLISH to `$SYS/...` is refused. Returns the
/// connected subscriber and publisher.
fn known_traffic(broker: &TestBroker) -> (RawClient, RawClient) {
    let mut offline = connect(
        broker,
        ProtocolVersion::V3_1_1,
        &broker.id_on(0, "away"),
        false,
    );
    subscribe(&mut offline, "t/#", QoS::AtLeastOnce);
    offline.disconnect();
    scrape_until(broker, "one offline session", |s| {
        s.sum("coremq_sessions", &[("state", "offline")]) == 1.0
    });

    let mut sub = connect(broker, ProtocolVersion::V5, &broker.id_on(1, "sub"), true);
    subscribe(&mut sub, "t/#", QoS::ExactlyOnce);
    let mut publisher = connect(broker, ProtocolVersion::V5, &broker.id_on(0, "pub"), true);
    for (qos, count) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .zip(SENT)
    {
        for i in 0..count {
            publish(&mut publisher, "t/x", format!("{qos:?} {i}"), qos);
        }
    }
    // The `$SYS` tree is the broker's: MQTT 5 is told Not authorized, nothing is routed.
    publisher.send(&publish_packet(
        "$SYS/broker/clients/connected",
        "999",
        QoS::AtLeastOnce,
        7,
    ));
    match publisher.expect_packet() {
        Packet::PubAck(ack) => {
            assert_eq!(ack.packet_id, packet_id(7));
            assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
        }
        other => panic!("expected PUBACK 0x87, got {other:?}"),
    }

    // Deliveries and the QoS 2 releases interleave: answer each packet as it comes.
    let (mut got, mut released) = ([0usize; 3], 0);
    while got.iter().sum::<usize>() < SENT.iter().sum() || released < SENT[2] {
        match sub.expect_packet() {
            Packet::Publish(p) => {
                assert_eq!(p.topic.as_str(), "t/x");
                got[p.qos as usize] += 1;
                match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => sub.send(&Packet::PubAck(PublishAck::new(id))),
                    (QoS::ExactlyOnce, Some(id)) => sub.send(&Packet::PubRec(PublishAck::new(id))),
                    _ => {}
                }
            }
            Packet::PubRel(rel) => {
                released += 1;
                sub.send(&Packet::PubComp(PublishAck::new(rel.packet_id)));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, SENT, "deliveries by QoS");
    (sub, publisher)
}

#[test]
fn counters_match_known_traffic_summed_over_shards() {
    let broker = observed_broker();
    let (_sub, _publisher) = known_traffic(&broker);
    // Every count below is final once the subscriber's last PUBCOMP is read: wait for that.
    let m = scrape_until(&broker, "the subscriber's acknowledgements counted", |s| {
        s.sum("coremq_packets_received_total", &[("type", "pubcomp")]) == 3.0
    });
    let count = |name: &str, labels: &[(&str, &str)]| m.sum(name, labels) as u64;

    for (qos, received, sent) in [("0", 5, 5), ("1", 5, 4), ("2", 3, 3)] {
        // QoS 1 received: the four to t/x and the refused one to $SYS.
        let q = [("qos", qos)];
        assert_eq!(
            count("coremq_messages_received_total", &q),
            received,
            "in, QoS {qos}"
        );
        assert_eq!(
            count("coremq_messages_sent_total", &q),
            sent,
            "out, QoS {qos}"
        );
    }
    let received = |t| count("coremq_packets_received_total", &[("type", t)]);
    let sent = |t| count("coremq_packets_sent_total", &[("type", t)]);
    assert_eq!(
        [
            "connect",
            "subscribe",
            "publish",
            "puback",
            "pubrec",
            "pubrel",
            "pubcomp",
            "disconnect"
        ]
        .map(received),
        [3, 2, 13, 4, 3, 3, 3, 1],
        "packets received by type"
    );
    assert_eq!(
        ["connack", "suback", "publish", "puback", "pubrec", "pubrel", "pubcomp"].map(sent),
        [3, 2, 12, 5, 3, 3, 3],
        "packets sent by type"
    );
    assert_eq!(count("coremq_logins_total", &[]), 3);
    assert_eq!(count("coremq_publishes_denied_total", &[]), 1);
    assert_eq!(
        count("coremq_messages_dropped_total", &[("reason", "offline")]),
        5
    );
    for reason in [
        "queue_full",
        "slow_reader",
        "too_large",
        "expired",
        "denied",
    ] {
        assert_eq!(
            count("coremq_messages_dropped_total", &[("reason", reason)]),
            0
        );
    }
    assert_eq!(
        count("coremq_queued_messages", &[]),
        7,
        "QoS 1 and 2 wait offline"
    );
    assert_eq!(count("coremq_sessions", &[("state", "online")]), 2);
    assert_eq!(count("coremq_sessions", &[("state", "offline")]), 1);
    assert_eq!(count("coremq_connections", &[("state", "live")]), 2);
    assert_eq!(count("coremq_subscriptions", &[]), 2);
    assert_eq!(count("coremq_inflight_messages", &[]), 0);
    // Each of the 12 messages crossed from the publisher's shard to the subscriber's, and its
    // time inside the broker was recorded once.
    assert!(count("coremq_mesh_messages_total", &[("from", "0"), ("to", "1")]) >= 12);
    assert_eq!(count("coremq_message_latency_seconds_count", &[]), 12);
    let bytes_in = count("coremq_bytes_received_total", &[]);
    assert!(bytes_in > 13 * "t/x".len() as u64, "{bytes_in} bytes in");
    assert!(m.sum("coremq_busy_seconds_total", &[]) > 0.0);
}

#[test]
fn sys_topics_show_the_same_totals() {
    let broker = observed_broker();
    let (_sub, _publisher) = known_traffic(&broker);
    let mut monitor = connect(&broker, ProtocolVersion::V5, &broker.id_on(1, "mon"), true);
    subscribe(&mut monitor, "$SYS/broker/#", QoS::AtMostOnce);
    // Published every second, retained: the latest value of each topic must reach the expected
    // totals (the monitor itself is the third connection and subscription).
    let want: HashMap<&str, &str> = [
        ("publish/messages/received", "13"),
        ("publish/messages/dropped", "5"),
        ("clients/connected", "3"),
        ("clients/disconnected", "1"),
        ("clients/total", "4"),
        ("subscriptions/count", "3"),
    ]
    .into();
    let mut seen: HashMap<String, String> = HashMap::new();
    let deadline = Instant::now() + PATIENCE;
    let present = ["version", "uptime", "load/publish/received/1min"];
    while !want
        .iter()
        .all(|(k, v)| seen.get(*k).map(String::as_str) == Some(*v))
        || !present.iter().all(|k| seen.contains_key(*k))
    {
        assert!(
            Instant::now() < deadline,
            "$SYS never showed {want:?}; latest values: {seen:?}"
        );
        let p = monitor.expect_publish();
        let topic = p
            .topic
            .as_str()
            .strip_prefix("$SYS/broker/")
            .expect("$SYS/broker/");
        seen.insert(topic.into(), String::from_utf8_lossy(&p.payload).into());
    }
    assert!(seen["version"].starts_with("coremq version "), "{seen:?}");
    assert!(seen["uptime"].ends_with(" seconds"), "{seen:?}");
    // A load average is a per-minute rate with two decimals (its value depends on when the
    // publications fell; `metrics::sys` tests the averaging with injected time).
    let load = &seen["load/publish/received/1min"];
    let (whole, decimals) = load.split_once('.').expect("a decimal point");
    assert!(
        whole.parse::<u64>().is_ok() && decimals.len() == 2,
        "load {load:?}"
    );
    // A `#` subscription does not match `$SYS` topics [MQTT-4.7.2-1].
    let mut everything = connect(&broker, ProtocolVersion::V5, &broker.id_on(0, "all"), true);
    subscribe(&mut everything, "#", QoS::AtMostOnce);
    everything.expect_silence(Duration::from_millis(1500));
}

/// Runs `promtool` with `args` and `input` on its standard input; returns whether it succeeded
/// and everything it printed.
pub(crate) fn promtool(args: &[&str], input: &str) -> (bool, String) {
    let mut child = match Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "this test needs promtool (Debian package prometheus), which scripts/test installs: \
             {e}"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

#[test]
fn the_exposition_passes_promtool() {
    let broker = observed_broker();
    let _traffic = known_traffic(&broker);
    let scrape = Scrape::of(&broker);
    // promtool exits 0 when the text parses; lint findings (naming, missing HELP) go to its
    // output and count as failures here too.
    let (ok, findings) = promtool(&["check", "metrics"], &scrape.text);
    assert!(ok, "promtool: {findings}\n{}", scrape.text);
    assert_eq!(findings.trim(), "", "promtool findings");
}

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts");

#[test]
fn the_scrape_config_and_every_dashboard_query_are_valid() {
    let config = format!("{SCRIPTS}/prometheus.yml");
    let (ok, out) = promtool(&["check", "config", &config], "");
    assert!(ok, "promtool check config: {out}");

    let text = std::fs::read_to_string(format!("{SCRIPTS}/grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().expect("targets").iter())
        .map(|t| t["expr"].as_str().expect("expr").to_string())
        .collect();
    assert!(exprs.len() >= 12, "{exprs:?}");
    // Grafana's variables as Prometheus would see them once Grafana substituted them; then each
    // query is checked as a recording rule (promtool parses the PromQL).
    let rules: String = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*");
            format!(
                "      - record: coremq:panel_{i}\n        expr: {}\n",
                serde_json::json!(e)
            )
        })
        .collect();
    let dir = crate::common::TempDir::new("dashboard-rules");
    let file = dir.path.join("rules.yml");
    std::fs::write(
        &file,
        format!("groups:\n  - name: dashboard\n    rules:\n{rules}"),
    )
    .unwrap();
    let (ok, out) = promtool(&["check", "rules", file.to_str().unwrap()], "");
    assert!(ok, "a dashboard query does not parse: {out}");

    // Every metric a panel reads is one the broker exports.
    let broker = observed_broker();
    let scrape = Scrape::of(&broker);
    for expr in &exprs {
        for name in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("coremq_"))
        {
            assert!(
                scrape.text.contains(&format!("\n{name}{{")),
                "the dashboard reads {name}, which /metrics does not have"
            );
        }
    }
}

#[test]
fn healthz_answers_while_every_shard_runs() {
    let broker = observed_broker();
    let addr = broker.broker.metrics_addr().unwrap();
    assert_eq!(http_get(addr, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(http_get(addr, "/nope").0, 404);
}

#[test]
fn a_metrics_address_in_use_stops_start_up_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        shards: 1,
        metrics_listen: Some(taken.local_addr().unwrap()),
        ..Config::default()
    };
    let err = Broker::start(config)
        .err()
        .expect("start-up fails")
        .to_string();
    assert!(err.contains("COREMQ_METRICS_LISTEN"), "{err}");
}

/// Content filters are counted per evaluation and result: a subscription whose filter two
/// messages pass and one fails (plus one retained message it passes on SUBSCRIBE).
#[test]
fn filter_evaluations_are_counted_by_result() {
    let broker = observed_broker();
    let mut publisher = connect(
        &broker,
        ProtocolVersion::V3_1_1,
        &broker.id_on(1, "fpub"),
        true,
    );
    publisher.send(&{
        let mut p = publish_packet("f/r", br#"{"n": 5}"#, QoS::AtLeastOnce, 1);
        if let Packet::Publish(p) = &mut p {
            p.retain = true;
        }
        p
    });
    publisher.finish_publish(packet_id(1), QoS::AtLeastOnce);
    let mut sub = connect(
        &broker,
        ProtocolVersion::V3_1_1,
        &broker.id_on(0, "fsub"),
        true,
    );
    subscribe(&mut sub, "$filter/n > 1/f/#", QoS::AtMostOnce);
    assert_eq!(&sub.expect_publish().payload[..], br#"{"n": 5}"#);
    for m in [r#"{"n": 2}"#, r#"{"n": 0}"#, r#"{"n": 3}"#] {
        publish(&mut publisher, "f/x", m, QoS::AtMostOnce);
    }
    for want in [r#"{"n": 2}"#, r#"{"n": 3}"#] {
        assert_eq!(&sub.expect_publish().payload[..], want.as_bytes());
    }
    let m = scrape_until(&broker, "the filter evaluations counted", |s| {
        s.sum("coremq_filter_evaluations_total", &[]) == 4.0
    });
    let passed = m.sum("coremq_filter_evaluations_total", &[("result", "passed")]);
    let failed = m.sum("coremq_filter_evaluations_total", &[("result", "failed")]);
    assert_eq!((passed, failed), (3.0, 1.0));
}

/// "At most once per message per shard": a message tested by a plain filtered subscription and
/// by two filtered shared groups, all on one shard, is scanned as JSON once there (and not at all
/// on the publisher's shard, which has no filters).
#[test]
fn a_payload_is_scanned_once_per_shard_for_subscriptions_and_shared_groups() {
    let broker = observed_broker();
    let mut plain = connect(
        &broker,
        ProtocolVersion::V3_1_1,
        &broker.id_on(0, "sc-a"),
        true,
    );
    subscribe(&mut plain, "$filter/n > 1/s/#", QoS::AtMostOnce);
    let mut g1 = connect(
        &broker,
        ProtocolVersion::V3_1_1,
        &broker.id_on(0, "sc-b"),
        true,
    );
    subscribe(&mut g1, "$filter/n > 2/$share/one/s/#", QoS::AtMostOnce);
    let mut g2 = connect(
        &broker,
        ProtocolVersion::V3_1_1,
        &broker.id_on(0, "sc-c"),
        true,
    );
    subscribe(&mut g2, "$filter/n > 3/$share/two/s/#", QoS::AtMostOnce);
    let mut publisher = connect(
        &broker,
        ProtocolVersion::V3_1_1,
        &broker.id_on(1, "sc-p"),
        true,
    );
    publish(&mut publisher, "s/x", r#"{"n": 9}"#, QoS::AtMostOnce);
    for sub in [&mut plain, &mut g1, &mut g2] {
        assert_eq!(&sub.expect_publish().payload[..], br#"{"n": 9}"#);
    }
    let m = scrape_until(&broker, "three filter evaluations counted", |s| {
        s.sum("coremq_filter_evaluations_total", &[("result", "passed")]) == 3.0
    });
    assert_eq!(m.sum("coremq_filter_payload_scans_total", &[]), 1.0);
}
