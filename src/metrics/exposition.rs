//! The Prometheus text exposition format (version 0.0.4) of the shards' snapshots, hand-written:
//! a few dozen families of plain numbers need no library, and the output is built in one pass
//! into one `String` per scrape. Every series carries its `shard` label; Prometheus sums over
//! shards (`sum without (shard) (...)`). The README lists every family with its meaning.
//!
//! Worked example, one family:
//! ```text
//! # HELP coremq_messages_received_total PUBLISH packets received from clients, by QoS.
//! # TYPE coremq_messages_received_total counter
//! coremq_messages_received_total{shard="0",qos="0"} 1024
//! ```

use std::fmt::{Display, Write};

use super::{Listener, NodeFigures, ShardSnapshot, PACKET_TYPES};

/// Upper bounds (seconds) of the latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The whole `/metrics` body.
pub fn render(
    shards: &[ShardSnapshot],
    node: &NodeFigures,
    uptime_secs: f64,
    version: &str,
) -> String {
    let mut o = Out(String::with_capacity(16 << 10));
    broker_families(&mut o, shards.len(), uptime_secs, version);
    gauges(&mut o, shards);
    traffic(&mut o, shards);
    losses(&mut o, shards);
    mesh(&mut o, shards);
    latency(&mut o, shards);
    node_families(&mut o, node);
    o.0
}

/// The cluster link's and the bridges' families (no `shard` label: one link per node).
fn node_families(o: &mut Out, node: &NodeFigures) {
    if let Some(c) = &node.cluster {
        o.family(
            "coremq_cluster_connected",
            "gauge",
            "1 while the node is connected to NATS (COREMQ_CLUSTER_NATS).",
        );
        o.sample("coremq_cluster_connected", &[], u8::from(c.connected));
        o.family(
            "coremq_cluster_messages_total",
            "counter",
            "Messages sent to other nodes (out) and received from them (in).",
        );
        o.sample(
            "coremq_cluster_messages_total",
            &[("direction", "out")],
            c.published,
        );
        o.sample(
            "coremq_cluster_messages_total",
            &[("direction", "in")],
            c.received,
        );
        o.family(
            "coremq_cluster_dropped_total",
            "counter",
            "Messages dropped because a queue between the shards and the NATS link was full.",
        );
        o.sample("coremq_cluster_dropped_total", &[], c.dropped);
        o.family(
            "coremq_cluster_duplicates_total",
            "counter",
            "Copies of a message that arrived again through an overlapping subscription (not routed).",
        );
        o.sample("coremq_cluster_duplicates_total", &[], c.duplicates);
        o.family(
            "coremq_cluster_takeovers_total",
            "counter",
            "Client ids another node took (connections here closed with 0x8E, if any).",
        );
        o.sample("coremq_cluster_takeovers_total", &[], c.takeovers);
    }
    if node.bridges.is_empty() {
        return;
    }
    o.family(
        "coremq_bridge_connected",
        "gauge",
        "1 while the bridge is connected to its remote broker and subscribed on both sides.",
    );
    for b in &node.bridges {
        o.sample(
            "coremq_bridge_connected",
            &[("bridge", &b.name)],
            u8::from(b.connected),
        );
    }
    o.family(
        "coremq_bridge_connections_total",
        "counter",
        "Connections the bridge made to its remote broker.",
    );
    for b in &node.bridges {
        o.sample(
            "coremq_bridge_connections_total",
            &[("bridge", &b.name)],
            b.connections,
        );
    }
    o.family(
        "coremq_bridge_messages_total",
        "counter",
        "Messages the bridge relayed to the remote broker (out) and from it (in).",
    );
    for b in &node.bridges {
        let name = b.name.as_str();
        o.sample(
            "coremq_bridge_messages_total",
            &[("bridge", name), ("direction", "out")],
            b.sent,
        );
        o.sample(
            "coremq_bridge_messages_total",
            &[("bridge", name), ("direction", "in")],
            b.received,
        );
    }
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// One sample per shard of `value(snapshot)`, with `extra` labels.
    fn per_shard(
        &mut self,
        name: &str,
        shards: &[ShardSnapshot],
        extra: &[(&str, &str)],
        value: impl Fn(&ShardSnapshot) -> u64,
    ) {
        for s in shards {
            let shard = s.shard.to_string();
            let mut labels = vec![("shard", shard.as_str())];
            labels.extend_from_slice(extra);
            self.sample(name, &labels, value(s));
        }
    }
}

/// A label value as the format wants it: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One figure of a shard's snapshot.
type Figure = fn(&ShardSnapshot) -> u64;

fn broker_families(o: &mut Out, shards: usize, uptime: f64, version: &str) {
    o.family(
        "coremq_build_info",
        "gauge",
        "Always 1; the version as a label.",
    );
    o.sample("coremq_build_info", &[("version", version)], 1);
    o.family(
        "coremq_uptime_seconds",
        "gauge",
        "Seconds since the broker started.",
    );
    o.sample("coremq_uptime_seconds", &[], format!("{uptime:.3}"));
    o.family("coremq_shards", "gauge", "Shards (pinned executors).");
    o.sample("coremq_shards", &[], shards);
}

fn gauges(o: &mut Out, shards: &[ShardSnapshot]) {
    let name = "coremq_connections";
    o.family(
        name,
        "gauge",
        "Connections, live (served by a task) or parked (idle).",
    );
    o.per_shard(name, shards, &[("state", "live")], |s| s.connections_live);
    o.per_shard(name, shards, &[("state", "parked")], |s| {
        s.connections_parked
    });
    let name = "coremq_sessions";
    o.family(
        name,
        "gauge",
        "Sessions homed on the shard, online or offline.",
    );
    o.per_shard(name, shards, &[("state", "online")], |s| s.sessions_online);
    o.per_shard(name, shards, &[("state", "offline")], |s| {
        s.sessions_offline
    });
    let simple: [(&str, &str, Figure); 7] = [
        (
            "coremq_subscriptions",
            "Subscriptions of the sessions homed on the shard.",
            |s| s.subscriptions,
        ),
        (
            "coremq_shared_groups",
            "Shared subscription groups with members on the shard.",
            |s| s.shared_groups,
        ),
        (
            "coremq_retained_messages",
            "Retained messages (every shard holds a full replica).",
            |s| s.retained_messages,
        ),
        (
            "coremq_retained_bytes",
            "Topic and payload bytes of the retained messages (per replica).",
            |s| s.retained_bytes,
        ),
        (
            "coremq_queued_messages",
            "Messages waiting in session queues.",
            |s| s.queued_messages,
        ),
        (
            "coremq_inflight_messages",
            "QoS 1/2 messages sent and not yet acknowledged.",
            |s| s.inflight_messages,
        ),
        (
            "coremq_publishers_held",
            "Publishers flow control holds back now.",
            |s| s.publishers_held,
        ),
    ];
    for (name, help, value) in simple {
        o.family(name, "gauge", help);
        o.per_shard(name, shards, &[], value);
    }
}

fn traffic(o: &mut Out, shards: &[ShardSnapshot]) {
    // Only the types that travel in each direction (CONNECT is never sent, CONNACK never
    // received).
    const FROM_CLIENTS: [usize; 11] = [1, 3, 4, 5, 6, 7, 8, 10, 12, 14, 15];
    const TO_CLIENTS: [usize; 11] = [2, 3, 4, 5, 6, 7, 9, 11, 13, 14, 15];
    for (name, help, types, packets) in [
        (
            "coremq_packets_received_total",
            "MQTT packets received from clients, by type.",
            FROM_CLIENTS,
            (|s: &ShardSnapshot| s.packets_in) as fn(&ShardSnapshot) -> [u64; 16],
        ),
        (
            "coremq_packets_sent_total",
            "MQTT packets sent to clients, by type.",
            TO_CLIENTS,
            |s| s.packets_out,
        ),
    ] {
        o.family(name, "counter", help);
        for t in types {
            o.per_shard(name, shards, &[("type", PACKET_TYPES[t])], |s| {
                packets(s)[t]
            });
        }
    }
    let name = "coremq_bytes_received_total";
    o.family(name, "counter", "Bytes read from client sockets.");
    o.per_shard(name, shards, &[], |s| s.bytes_in);
    let name = "coremq_bytes_sent_total";
    o.family(name, "counter", "Bytes written to client sockets.");
    o.per_shard(name, shards, &[], |s| s.bytes_out);
    for (name, help, by_qos) in [
        (
            "coremq_messages_received_total",
            "PUBLISH packets received from clients, by QoS.",
            (|s: &ShardSnapshot| s.publish_in) as fn(&ShardSnapshot) -> [u64; 3],
        ),
        (
            "coremq_messages_sent_total",
            "PUBLISH packets sent to subscribers, by QoS.",
            |s| s.publish_out,
        ),
    ] {
        o.family(name, "counter", help);
        for (q, qos) in ["0", "1", "2"].iter().enumerate() {
            o.per_shard(name, shards, &[("qos", qos)], |s| by_qos(s)[q]);
        }
    }
    let name = "coremq_logins_total";
    o.family(
        name,
        "counter",
        "CONNECTs accepted (success) and refused for bad credentials.",
    );
    o.per_shard(name, shards, &[("result", "success")], |s| s.logins);
    o.per_shard(name, shards, &[("result", "failure")], |s| {
        s.refused.bad_credentials
    });
    let name = "coremq_busy_seconds_total";
    o.family(
        name,
        "counter",
        "Seconds the shard's event loop ran (rate: busy ratio).",
    );
    for s in shards {
        let shard = s.shard.to_string();
        o.sample(name, &[("shard", &shard)], format!("{:.6}", s.busy_seconds));
    }
}

fn losses(o: &mut Out, shards: &[ShardSnapshot]) {
    counter_by(
        o,
        shards,
        (
            "coremq_messages_dropped_total",
            "Deliveries dropped, by reason.",
        ),
        &[
            ("queue_full", |s| s.dropped.queue_full),
            ("slow_reader", |s| s.dropped.slow_reader),
            ("offline", |s| s.dropped.offline),
            ("expired", |s| s.dropped.expired),
            ("too_large", |s| s.dropped.too_large),
            ("denied", |s| s.dropped.denied),
        ],
    );
    let name = "coremq_publishes_denied_total";
    o.family(
        name,
        "counter",
        "PUBLISH packets the ACL kept from being routed.",
    );
    o.per_shard(name, shards, &[], |s| s.denied_publish);
    let name = "coremq_filter_evaluations_total";
    o.family(
        name,
        "counter",
        "Content filter evaluations (one per message and filtered subscription), by result.",
    );
    o.per_shard(name, shards, &[("result", "passed")], |s| s.filter_passed);
    o.per_shard(name, shards, &[("result", "failed")], |s| s.filter_failed);
    let name = "coremq_listener_connections_total";
    o.family(
        name,
        "counter",
        "Connections accepted per listener, and those whose TLS handshake or WebSocket upgrade \
         failed (bad certificate, not TLS, HTTP refused, timed out).",
    );
    for l in Listener::ALL {
        let i = l as usize;
        let accepted = [("listener", l.name()), ("result", "accepted")];
        o.per_shard(name, shards, &accepted, move |s| s.accepted[i]);
        let failed = [("listener", l.name()), ("result", "layer_failed")];
        o.per_shard(name, shards, &failed, move |s| s.layer_failed[i]);
    }
    let name = "coremq_filter_payload_scans_total";
    o.family(
        name,
        "counter",
        "Payloads scanned as JSON for content filters (at most once per message per shard).",
    );
    o.per_shard(name, shards, &[], |s| s.filter_scans);
    counter_by(
        o,
        shards,
        (
            "coremq_connections_refused_total",
            "Connections and CONNECTs refused, by reason.",
        ),
        &[
            ("banned", |s| s.refused.banned),
            ("login_banned", |s| s.refused.login_banned),
            ("flapping", |s| s.refused.flapping),
            ("bad_credentials", |s| s.refused.bad_credentials),
            ("not_authorized", |s| s.refused.not_authorized),
            ("quota_exceeded", |s| s.refused.quota),
            ("per_address", |s| s.refused.per_address),
            ("connection_rate", |s| s.refused.connection_rate),
            ("connecting", |s| s.refused.connecting),
        ],
    );
}

/// A counter family (name, help) with one series per shard and `reason`.
fn counter_by(
    o: &mut Out,
    shards: &[ShardSnapshot],
    (name, help): (&str, &str),
    reasons: &[(&str, Figure)],
) {
    o.family(name, "counter", help);
    for (reason, value) in reasons {
        o.per_shard(name, shards, &[("reason", reason)], value);
    }
}

fn mesh(o: &mut Out, shards: &[ShardSnapshot]) {
    for (name, help, value) in [
        (
            "coremq_mesh_messages_total",
            "Messages sent from one shard to another.",
            (|s: &ShardSnapshot, to: usize| s.mesh_messages.get(to).copied().unwrap_or(0))
                as fn(&ShardSnapshot, usize) -> u64,
        ),
        (
            "coremq_mesh_batches_total",
            "Batches sent from one shard to another (messages / batches: batch size).",
            |s, to| s.mesh_batches.get(to).copied().unwrap_or(0),
        ),
    ] {
        o.family(name, "counter", help);
        for s in shards {
            let from = s.shard.to_string();
            for to in (0..shards.len()).filter(|&t| t != s.shard) {
                let to_label = to.to_string();
                o.sample(name, &[("from", &from), ("to", &to_label)], value(s, to));
            }
        }
    }
}

fn latency(o: &mut Out, shards: &[ShardSnapshot]) {
    let name = "coremq_message_latency_seconds";
    o.family(
        name,
        "histogram",
        "Time inside the broker: from reading a PUBLISH to writing it to a subscriber's socket.",
    );
    for s in shards {
        let shard = s.shard.to_string();
        let count = s.latency.as_ref().map_or(0, |h| h.len());
        for le in LATENCY_BUCKETS {
            let upto = (le * 1e6) as u64;
            let n = s.latency.as_ref().map_or(0, |h| h.count_between(0, upto));
            let le = le.to_string();
            o.sample(
                &format!("{name}_bucket"),
                &[("shard", &shard), ("le", &le)],
                n,
            );
        }
        o.sample(
            &format!("{name}_bucket"),
            &[("shard", &shard), ("le", "+Inf")],
            count,
        );
        let sum = s.latency_sum_us as f64 / 1e6;
        o.sample(
            &format!("{name}_sum"),
            &[("shard", &shard)],
            format!("{sum:.6}"),
        );
        o.sample(&format!("{name}_count"), &[("shard", &shard)], count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(shard: usize) -> ShardSnapshot {
        let mut s = ShardSnapshot {
            shard,
            connections_live: 3,
            mesh_messages: vec![0, 7],
            mesh_batches: vec![0, 2],
            latency: super::super::counters::latency_histogram(),
            ..ShardSnapshot::default()
        };
        s.publish_in[1] = 5;
        if let Some(h) = s.latency.as_mut() {
            h.saturating_record_n(300, 4);
        }
        s.latency_sum_us = 1200;
        s
    }

    #[test]
    fn families_have_help_type_and_labelled_samples() {
        let node = NodeFigures {
            cluster: Some(super::super::ClusterFigures {
                connected: true,
                published: 9,
                ..Default::default()
            }),
            bridges: vec![super::super::BridgeFigures {
                name: "cloud".into(),
                connected: true,
                connections: 2,
                sent: 3,
                received: 4,
            }],
        };
        let text = render(&[snapshot(0), snapshot(1)], &node, 12.5, "0.1.0");
        assert!(text.contains("coremq_cluster_messages_total{direction=\"out\"} 9\n"));
        assert!(
            text.contains("coremq_bridge_messages_total{bridge=\"cloud\",direction=\"in\"} 4\n")
        );
        assert!(text.contains("# TYPE coremq_connections gauge\n"));
        assert!(text.contains("coremq_connections{shard=\"1\",state=\"live\"} 3\n"));
        assert!(text.contains("coremq_messages_received_total{shard=\"0\",qos=\"1\"} 5\n"));
        assert!(text.contains("coremq_mesh_messages_total{from=\"0\",to=\"1\"} 7\n"));
        assert!(!text.contains("to=\"0\"}") || text.contains("from=\"1\",to=\"0\""));
        // 4 messages of 300 µs: above the 250 µs bucket, within 500 µs.
        assert!(
            text.contains("coremq_message_latency_seconds_bucket{shard=\"0\",le=\"0.00025\"} 0\n")
        );
        assert!(
            text.contains("coremq_message_latency_seconds_bucket{shard=\"0\",le=\"0.0005\"} 4\n")
        );
        assert!(text.contains("coremq_message_latency_seconds_bucket{shard=\"0\",le=\"+Inf\"} 4\n"));
        assert!(text.contains("coremq_message_latency_seconds_sum{shard=\"0\"} 0.001200\n"));
        assert!(text.contains("coremq_build_info{version=\"0.1.0\"} 1\n"));
        // Every sample line belongs to a family declared before it.
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|x| name.strip_suffix(x))
                    .filter(|b| declared.contains(*b))
                    .unwrap_or(name);
                assert!(declared.contains(base), "{line}");
            }
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
