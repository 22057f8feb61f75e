//! The end of a run: the verdict (what makes the exit status non-zero), the human table on
//! stdout, and the JSON document for `--json`. Pure formatting of an [`Outcome`]; writing files
//! is `main`'s job.

use std::fmt::Write as _;

use coremq::protocol::{ProtocolVersion, QoS};

use crate::args::{Args, Scenario};
use crate::latency::Percentiles;
use crate::run::{fmt_us, Outcome};

/// Why the run failed; empty when it passed.
pub fn failures(args: &Args, o: &Outcome) -> Vec<String> {
    let c = &o.correctness;
    let mut f = Vec::new();
    if let Some(why) = &o.aborted {
        f.push(format!("aborted: {why}"));
    }
    if o.set_up_failed > 0 {
        f.push(format!("{} clients failed to set up", o.set_up_failed));
    }
    if args.qos != QoS::AtMostOnce && c.lost > 0 {
        f.push(format!(
            "{} messages lost at QoS {}",
            c.lost, args.qos as u8
        ));
    }
    if args.qos == QoS::ExactlyOnce && c.duplicates > 0 {
        f.push(format!("{} duplicates at QoS 2", c.duplicates));
    }
    if c.unexpected > 0 {
        f.push(format!(
            "{} deliveries to the wrong subscriber",
            c.unexpected
        ));
    }
    if o.counters.disconnects > 0 {
        f.push(format!(
            "{} connections dropped (or subscriptions refused) during the run",
            o.counters.disconnects
        ));
    }
    if args.scenario == Scenario::Connect && o.counters.connects_failed > 0 {
        f.push(format!("{} connects failed", o.counters.connects_failed));
    }
    f
}

fn version_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::V3_1 => "3.1",
        ProtocolVersion::V3_1_1 => "3.1.1",
        ProtocolVersion::V5 => "5",
    }
}

/// `1234567` → `1,234,567`.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn per_s(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

fn load_desc(args: &Args) -> String {
    match args.rate {
        Some(r) => format!(
            "open loop {} msg/s (latency from intended send time)",
            group(r)
        ),
        None => format!("closed loop, {} in flight per publisher", args.inflight),
    }
}

fn percentile_rows(out: &mut String, name: &str, p: &Percentiles) {
    let _ = writeln!(
        out,
        "{name:<12} {:>9} {:>9} {:>9} {:>9} {:>9}   n = {}",
        fmt_us(p.p50),
        fmt_us(p.p90),
        fmt_us(p.p99),
        fmt_us(p.p999),
        fmt_us(p.max),
        group(p.count)
    );
}

/// The human table.
pub fn table(args: &Args, o: &Outcome) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "coremq-loadtest {} · MQTT {} · QoS {} · {} · {} threads · run {:08x}",
        args.scenario.name(),
        version_name(args.version),
        args.qos as u8,
        args.addr,
        o.threads,
        o.run
    );
    let c = &o.counters;
    let header = format!(
        "{:<12} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency", "p50", "p90", "p99", "p99.9", "max"
    );
    match args.scenario {
        _ if !o.measured => {
            let _ = writeln!(
                w,
                "\nconnections  {} set up, {} failed",
                o.set_up, o.set_up_failed
            );
        }
        Scenario::Connect => {
            let _ = writeln!(
                w,
                "{} concurrent connect/disconnect loops, {:.1} s measured after {:.1} s warm-up\n",
                args.connections,
                o.window_s,
                args.warmup.as_secs_f64()
            );
            let _ = writeln!(
                w,
                "connects/s   {:>12}   ({} in window, {} in all, {} failed)",
                group(per_s(c.connects_in_window, o.window_s).round() as u64),
                group(c.connects_in_window),
                group(c.connects_ok),
                group(c.connects_failed)
            );
            let _ = writeln!(w, "\n{header}");
            percentile_rows(w, "connect", &Percentiles::of(&o.connect));
        }
        Scenario::Idle => {
            let _ = writeln!(
                w,
                "{} connections held for {:.1} s\n",
                args.connections, o.window_s
            );
            let _ = writeln!(
                w,
                "connections  {} up, {} failed, {} dropped",
                group(o.set_up),
                group(o.set_up_failed),
                group(c.disconnects)
            );
            let _ = writeln!(w, "\n{header}");
            percentile_rows(w, "connect", &Percentiles::of(&o.connect));
        }
        _ => {
            let clients = match args.scenario {
                Scenario::Pairs => format!("{} publisher/subscriber pairs", args.pairs),
                Scenario::Retained => format!(
                    "{} retained topics from {} publishers, then {} subscribers",
                    args.topics, args.publishers, args.subscribers
                ),
                _ => format!(
                    "{} publishers → {} subscribers, {} topics",
                    args.publishers, args.subscribers, args.topics
                ),
            };
            let _ = writeln!(
                w,
                "{clients}, payload {} B, {}",
                args.payload,
                load_desc(args)
            );
            if args.scenario == Scenario::Retained {
                let mut tta = o.time_to_all_us.clone();
                tta.sort_unstable();
                let _ = writeln!(
                    w,
                    "\nfetch        all {} retained messages reached {} of {} subscribers; slowest after {}, median {}",
                    group(u64::from(args.topics)),
                    tta.len(),
                    args.subscribers,
                    fmt_us(tta.last().copied().unwrap_or(0)),
                    fmt_us(tta.get(tta.len() / 2).copied().unwrap_or(0)),
                );
                let _ = writeln!(
                    w,
                    "throughput   {:.0} deliveries/s to the subscribers",
                    per_s(o.correctness.delivered, o.window_s)
                );
                let _ = writeln!(w, "\n{header}   (since SUBSCRIBE)");
            } else {
                let _ = writeln!(
                    w,
                    "{:.1} s measured after {:.1} s warm-up\n",
                    o.window_s,
                    args.warmup.as_secs_f64()
                );
                if o.window_s == 0.0 && o.aborted.is_none() {
                    let _ = writeln!(
                        w,
                        "(nothing was sent in the measured window: --max-messages ran out during the warm-up; try --warmup 0)\n"
                    );
                }
                let _ = writeln!(w, "{:<12} {:>14} {:>14}", "", "sent", "received");
                let _ = writeln!(
                    w,
                    "{:<12} {:>14} {:>14}",
                    "msgs/s",
                    group(per_s(c.sent_in_window, o.window_s).round() as u64),
                    group(per_s(c.received_in_window, o.window_s).round() as u64)
                );
                let _ = writeln!(
                    w,
                    "{:<12} {:>14} {:>14}",
                    "total",
                    group(c.sent),
                    group(c.received)
                );
                if c.behind > 0 {
                    let _ = writeln!(
                        w,
                        "behind       {} messages due in the window were never sent: the rate was not sustained",
                        group(c.behind)
                    );
                }
                let _ = writeln!(w, "\n{header}");
            }
            percentile_rows(w, "end to end", &Percentiles::of(&o.latency));
            let k = &o.correctness;
            // Retained messages are on distinct topics: their order is not specified.
            let order = if args.scenario == Scenario::Retained {
                String::new()
            } else {
                format!("  out-of-order {}", group(k.out_of_order))
            };
            let _ = writeln!(
                w,
                "\ncorrectness  expected {}  delivered {}  lost {}  duplicates {}{order}  unexpected {}  unconfirmed {}",
                group(k.expected),
                group(k.delivered),
                group(k.lost),
                group(k.duplicates),
                group(k.unexpected),
                group(k.unconfirmed)
            );
            if c.foreign > 0 || c.rejected > 0 {
                let _ = writeln!(
                    w,
                    "             foreign payloads {}  refused by the broker {}",
                    group(c.foreign),
                    group(c.rejected)
                );
            }
            let _ = writeln!(
                w,
                "connections  {} set up, {} failed, {} dropped",
                o.set_up, o.set_up_failed, c.disconnects
            );
        }
    }
    if let (Some(before), Some(after)) = (o.rss_before_kb, o.rss_after_kb) {
        let n = u64::from(args.connections).max(o.set_up).max(1);
        let _ = writeln!(
            w,
            "broker RSS   {} KiB before, {} KiB after: {:.1} KiB per connection",
            group(before),
            group(after),
            (after as f64 - before as f64) / n as f64
        );
    }
    for e in o.errors.iter().take(10) {
        let _ = writeln!(w, "error        {e}");
    }
    let f = failures(args, o);
    let _ = writeln!(
        w,
        "\nverdict      {}",
        if f.is_empty() {
            "OK".to_string()
        } else {
            format!("FAIL: {}", f.join("; "))
        }
    );
    out
}

/// A JSON value, written by hand (no serde in this crate).
pub enum J {
    Int(u64),
    Num(f64),
    Str(String),
    Bool(bool),
    Null,
    Arr(Vec<J>),
    Obj(Vec<(&'static str, J)>),
}

impl J {
    pub fn write(&self, out: &mut String) {
        match self {
            J::Int(n) => {
                let _ = write!(out, "{n}");
            }
            J::Num(x) if x.is_finite() => {
                let _ = write!(out, "{}", (x * 1000.0).round() / 1000.0);
            }
            J::Num(_) | J::Null => out.push_str("null"),
            J::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            J::Str(s) => {
                out.push('"');
                for ch in s.chars() {
                    match ch {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        c if (c as u32) < 0x20 => {
                            let _ = write!(out, "\\u{:04x}", c as u32);
                        }
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    J::Str((*k).to_string()).write(out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn percentiles_json(p: &Percentiles) -> J {
    J::Obj(vec![
        ("count", J::Int(p.count)),
        ("p50", J::Int(p.p50)),
        ("p90", J::Int(p.p90)),
        ("p99", J::Int(p.p99)),
        ("p999", J::Int(p.p999)),
        ("max", J::Int(p.max)),
        ("mean", J::Num(p.mean)),
    ])
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> J) -> J {
    v.map_or(J::Null, f)
}

/// The `--json` document: one line.
pub fn json(args: &Args, o: &Outcome) -> String {
    let c = &o.counters;
    let k = &o.correctness;
    let fails = failures(args, o);
    let (sent_per_s, received_per_s) = match args.scenario {
        Scenario::Retained => (J::Null, J::Num(per_s(k.delivered, o.window_s))),
        _ => (
            J::Num(per_s(c.sent_in_window, o.window_s)),
            J::Num(per_s(c.received_in_window, o.window_s)),
        ),
    };
    let doc = J::Obj(vec![
        ("scenario", J::Str(args.scenario.name().into())),
        ("command_line", J::Str(args.command_line.clone())),
        ("run", J::Str(format!("{:08x}", o.run))),
        (
            "parameters",
            J::Obj(vec![
                ("target", J::Str(args.addr.to_string())),
                ("mqtt_version", J::Str(version_name(args.version).into())),
                ("qos", J::Int(args.qos as u64)),
                ("payload_bytes", J::Int(args.payload as u64)),
                ("topics", J::Int(args.topics.into())),
                ("publishers", J::Int(args.publishers.into())),
                ("subscribers", J::Int(args.subscribers.into())),
                ("pairs", J::Int(args.pairs.into())),
                ("connections", J::Int(args.connections.into())),
                ("inflight", J::Int(args.inflight.into())),
                ("rate", opt(args.rate, J::Int)),
                ("max_messages", opt(args.max_messages, J::Int)),
                ("threads", J::Int(o.threads as u64)),
                ("duration_s", J::Num(args.duration.as_secs_f64())),
                ("warmup_s", J::Num(args.warmup.as_secs_f64())),
                ("drain_s", J::Num(args.drain.as_secs_f64())),
            ]),
        ),
        (
            "throughput",
            J::Obj(vec![
                ("window_s", J::Num(o.window_s)),
                // Retained: the fetch rate (deliveries over the slowest subscriber's fetch time).
                ("sent_per_s", sent_per_s),
                ("received_per_s", received_per_s),
                ("sent_total", J::Int(c.sent)),
                ("behind_schedule", J::Int(c.behind)),
                ("received_total", J::Int(c.received)),
                (
                    "connects_per_s",
                    J::Num(per_s(c.connects_in_window, o.window_s)),
                ),
                ("connects_ok", J::Int(c.connects_ok)),
                ("connects_failed", J::Int(c.connects_failed)),
            ]),
        ),
        ("latency_us", percentiles_json(&Percentiles::of(&o.latency))),
        (
            "connect_latency_us",
            percentiles_json(&Percentiles::of(&o.connect)),
        ),
        (
            "losses",
            J::Obj(vec![
                ("expected", J::Int(k.expected)),
                ("delivered", J::Int(k.delivered)),
                ("lost", J::Int(k.lost)),
                ("duplicates", J::Int(k.duplicates)),
                ("out_of_order", J::Int(k.out_of_order)),
                ("unexpected", J::Int(k.unexpected)),
                ("unconfirmed", J::Int(k.unconfirmed)),
                ("acknowledged", J::Int(c.confirmed)),
                ("foreign", J::Int(c.foreign)),
                ("refused", J::Int(c.rejected)),
            ]),
        ),
        (
            "connections",
            J::Obj(vec![
                ("set_up", J::Int(o.set_up)),
                ("failed", J::Int(o.set_up_failed)),
                ("dropped", J::Int(c.disconnects)),
            ]),
        ),
        (
            "retained_time_to_all_us",
            J::Arr(o.time_to_all_us.iter().map(|&t| J::Int(t)).collect()),
        ),
        ("broker_rss_before_kib", opt(o.rss_before_kb, J::Int)),
        ("broker_rss_after_kib", opt(o.rss_after_kb, J::Int)),
        ("elapsed_s", J::Num(o.elapsed_s)),
        ("ok", J::Bool(fails.is_empty())),
        ("failures", J::Arr(fails.into_iter().map(J::Str).collect())),
        (
            "errors",
            J::Arr(o.errors.iter().cloned().map(J::Str).collect()),
        ),
    ]);
    let mut s = String::new();
    doc.write(&mut s);
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_and_nests() {
        let j = J::Obj(vec![
            ("s", J::Str("a\"b\\c\nd\u{1}".into())),
            ("n", J::Num(1.23456)),
            ("i", J::Int(7)),
            ("x", J::Num(f64::NAN)),
            ("a", J::Arr(vec![J::Bool(true), J::Null])),
        ]);
        let mut s = String::new();
        j.write(&mut s);
        assert_eq!(
            s,
            r#"{"s":"a\"b\\c\nd\u0001","n":1.235,"i":7,"x":null,"a":[true,null]}"#
        );
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }
}
