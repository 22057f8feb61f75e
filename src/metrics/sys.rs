//! The `$SYS/broker/...` topics, with Mosquitto's names where a figure matches one, computed from
//! the shards' snapshots every COREMQ_SYS_INTERVAL; the shard publishes them retained (subject to
//! the ACL like any topic). Pure: time is a parameter.
//!
//! The `load/.../1min` (`5min`, `15min`) figures are exponentially weighted moving averages per
//! minute, as Mosquitto computes them: at each interval of `dt` seconds with `n` new events,
//! `load = load·e + (n·60/dt)·(1 − e)` with `e = exp(−dt / 60 s)` (300 s, 900 s).

use std::time::Instant;

use super::ShardSnapshot;

/// The counters the load averages follow, by their topic under `$SYS/broker/load/`.
const LOADS: [&str; 8] = [
    "messages/received",
    "messages/sent",
    "publish/received",
    "publish/sent",
    "publish/dropped",
    "bytes/received",
    "bytes/sent",
    "connections",
];

/// Sums over the shards.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    packets_in: u64,
    packets_out: u64,
    publish_in: u64,
    publish_out: u64,
    dropped: u64,
    bytes_in: u64,
    bytes_out: u64,
    connects: u64,
    connected: u64,
    offline: u64,
    subscriptions: u64,
    retained: u64,
    queued: u64,
    inflight: u64,
}

impl Totals {
    fn of(shards: &[ShardSnapshot]) -> Self {
        let mut t = Totals::default();
        for s in shards {
            t.packets_in += s.packets_in.iter().sum::<u64>();
            t.packets_out += s.packets_out.iter().sum::<u64>();
            t.publish_in += s.publish_in.iter().sum::<u64>();
            t.publish_out += s.publish_out.iter().sum::<u64>();
            let d = s.dropped;
            t.dropped += d.queue_full + d.slow_reader + d.offline + d.expired + d.too_large;
            t.bytes_in += s.bytes_in;
            t.bytes_out += s.bytes_out;
            t.connects += s.logins;
            t.connected += s.connections_live + s.connections_parked;
            t.offline += s.sessions_offline;
            t.subscriptions += s.subscriptions;
            t.queued += s.queued_messages;
            t.inflight += s.inflight_messages;
            // A replica per shard: the same count on each.
            t.retained = t.retained.max(s.retained_messages);
        }
        t
    }

    fn load_inputs(&self) -> [u64; 8] {
        [
            self.packets_in,
            self.packets_out,
            self.publish_in,
            self.publish_out,
            self.dropped,
            self.bytes_in,
            self.bytes_out,
            self.connects,
        ]
    }
}

/// What the `$SYS` publisher remembers between intervals.
#[derive(Debug, Default)]
pub struct SysTree {
    last: Option<(Instant, [u64; 8])>,
    /// Per load input: the 1, 5 and 15 minute averages.
    loads: [[f64; 3]; 8],
}

impl SysTree {
    /// The topics and their values at `now`, `uptime_secs` after start.
    pub fn update(
        &mut self,
        shards: &[ShardSnapshot],
        now: Instant,
        uptime_secs: u64,
        version: &str,
    ) -> Vec<(String, String)> {
        let t = Totals::of(shards);
        let inputs = t.load_inputs();
        if let Some((then, before)) = self.last {
            let dt = now.saturating_duration_since(then).as_secs_f64();
            if dt > 0.0 {
                for (i, load) in self.loads.iter_mut().enumerate() {
                    let per_minute = inputs[i].saturating_sub(before[i]) as f64 * 60.0 / dt;
                    for (k, window) in [60.0, 300.0, 900.0].into_iter().enumerate() {
                        let e = (-dt / window).exp();
                        load[k] = load[k] * e + per_minute * (1.0 - e);
                    }
                }
            }
        }
        self.last = Some((now, inputs));
        let mut out: Vec<(String, String)> = vec![
            ("version".into(), format!("coremq version {version}")),
            ("uptime".into(), format!("{uptime_secs} seconds")),
            ("clients/connected".into(), t.connected.to_string()),
            ("clients/disconnected".into(), t.offline.to_string()),
            (
                "clients/total".into(),
                (t.connected + t.offline).to_string(),
            ),
            ("messages/received".into(), t.packets_in.to_string()),
            ("messages/sent".into(), t.packets_out.to_string()),
            (
                "messages/stored".into(),
                (t.retained + t.queued + t.inflight).to_string(),
            ),
            ("publish/messages/received".into(), t.publish_in.to_string()),
            ("publish/messages/sent".into(), t.publish_out.to_string()),
            ("publish/messages/dropped".into(), t.dropped.to_string()),
            ("bytes/received".into(), t.bytes_in.to_string()),
            ("bytes/sent".into(), t.bytes_out.to_string()),
            ("subscriptions/count".into(), t.subscriptions.to_string()),
            ("retained messages/count".into(), t.retained.to_string()),
        ];
        for (i, name) in LOADS.iter().enumerate() {
            for (k, span) in ["1min", "5min", "15min"].iter().enumerate() {
                out.push((
                    format!("load/{name}/{span}"),
                    format!("{:.2}", self.loads[i][k]),
                ));
            }
        }
        out.into_iter()
            .map(|(topic, value)| (format!("$SYS/broker/{topic}"), value))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn shard(publish_in: u64, connected: u64) -> ShardSnapshot {
        let mut s = ShardSnapshot {
            connections_live: connected,
            retained_messages: 2,
            ..ShardSnapshot::default()
        };
        s.publish_in[0] = publish_in;
        s
    }

    fn value<'a>(topics: &'a [(String, String)], name: &str) -> &'a str {
        topics
            .iter()
            .find(|(t, _)| t == &format!("$SYS/broker/{name}"))
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn totals_over_shards_with_mosquittos_names() {
        let mut tree = SysTree::default();
        let t = tree.update(&[shard(3, 1), shard(4, 2)], Instant::now(), 42, "0.1.0");
        assert_eq!(value(&t, "publish/messages/received"), "7");
        assert_eq!(value(&t, "clients/connected"), "3");
        assert_eq!(
            value(&t, "retained messages/count"),
            "2",
            "a replica, not a sum"
        );
        assert_eq!(value(&t, "uptime"), "42 seconds");
        assert_eq!(value(&t, "version"), "coremq version 0.1.0");
        assert_eq!(value(&t, "load/publish/received/1min"), "0.00");
    }

    #[test]
    fn loads_move_towards_the_rate_per_minute() {
        let t0 = Instant::now();
        let mut tree = SysTree::default();
        tree.update(&[shard(0, 0)], t0, 0, "v");
        // 600 messages in 10 s: 3,600 per minute. After one 10 s step the 1 min average has
        // moved 1 - e^(-1/6) of the way there.
        let t = tree.update(&[shard(600, 0)], t0 + Duration::from_secs(10), 10, "v");
        let want = 3600.0 * (1.0 - (-10.0f64 / 60.0).exp());
        let got: f64 = value(&t, "load/publish/received/1min").parse().unwrap();
        assert!((got - want).abs() < 0.01, "{got} vs {want}");
        let slower: f64 = value(&t, "load/publish/received/15min").parse().unwrap();
        assert!(slower < got);
    }
}
