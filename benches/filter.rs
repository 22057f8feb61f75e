//! Content-filter evaluation alone (`coremq::filter`), per message: N compiled filters on one
//! topic (N = 1, 10, 1000) evaluated against one `Subject` built per message, as the delivering
//! shard does after the trie match — the payload scanned once, whatever N.
//!
//! - `filter_eval/json_10pct/N`: filter k is `id == k % 10 && temp > 20` on a 64-byte JSON
//!   payload (a tenth pass);
//! - `filter_eval/json_nested/N`: `a.b[1].c == k % 10` on a 1 KiB JSON payload whose other
//!   fields are skipped by the scan;
//! - `filter_eval/metadata/N`: `topic[1] == "building-7" && qos >= 1` (no payload scan);
//! - `filter_eval/not_json/N`: the JSON filter on a 64-byte binary payload (fails at once).
//!
//! Throughput counts filters evaluated. The whole broker path (trie, delivery, filtered and
//! unfiltered) is `fanout_filtered` in `benches/fanout.rs`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use coremq::filter::{Filter, Limits, Schema, Subject};

const TOPIC: &str = "sensors/building-7/floor-3/temperature";

/// A case: its name, filter k's expression, the payload.
type Case<'a> = (&'static str, fn(usize) -> String, &'a [u8]);

fn bench_eval(c: &mut Criterion) {
    let json64: &[u8] = br#"{"id": 3, "temp": 21.5, "site": "north", "pad": "xxxxxxxxxxxxx"}"#;
    assert_eq!(json64.len(), 64);
    let mut big = String::from(r#"{"items": ["#);
    while big.len() < 900 {
        big.push_str(r#"{"k": 12345, "v": "abcdefgh"}, "#);
    }
    big.push_str(r#"0], "a": {"b": [{"c": 0}, {"c": 3}]}}"#);
    let binary: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(37) | 0x80).collect();
    let cases: [Case; 4] = [
        (
            "json_10pct",
            |k| format!("id == {} && temp > 20", k % 10),
            json64,
        ),
        (
            "json_nested",
            |k| format!("a.b[1].c == {}", k % 10),
            big.as_bytes(),
        ),
        (
            "metadata",
            |_| r#"topic[1] == "building-7" && qos >= 1"#.to_owned(),
            json64,
        ),
        (
            "not_json",
            |k| format!("id == {} && temp > 20", k % 10),
            &binary,
        ),
    ];
    let mut g = c.benchmark_group("filter_eval");
    for (name, expr, payload) in cases {
        for n in [1usize, 10, 1000] {
            let schema = Schema::default();
            let filters: Vec<Filter> = (0..n)
                .map(|k| Filter::compile(&expr(k), &Limits::default(), &schema).unwrap())
                .collect();
            g.throughput(Throughput::Elements(n as u64));
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    let mut subject = Subject::new(TOPIC, black_box(payload), &schema);
                    subject.qos = 1;
                    filters.iter().filter(|f| f.matches(&subject)).count()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_eval);
criterion_main!(benches);
