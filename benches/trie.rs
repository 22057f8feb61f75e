//! Subscription trie: matching a topic against 1k and 100k filters with a realistic wildcard
//! mix, and insert/remove churn. Fixed seed; inputs built outside the timed closures.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use coremq::topic::Trie;

/// A small deterministic generator (xorshift) so runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Filters shaped like a fleet: `site/<s>/device/<d>/<metric>`, with 10% `+` levels and 5%
/// trailing `#`.
fn filters(n: usize, rng: &mut Rng) -> Vec<String> {
    (0..n)
        .map(|_| {
            let mut levels = vec![
                "site".to_string(),
                format!("s{}", rng.below(100)),
                "device".to_string(),
                format!("d{}", rng.below(1000)),
                format!("m{}", rng.below(20)),
            ];
            for level in levels.iter_mut().skip(1) {
                if rng.below(10) == 0 {
                    *level = "+".into();
                }
            }
            if rng.below(20) == 0 {
                levels.truncate(1 + rng.below(4) as usize);
                levels.push("#".into());
            }
            levels.join("/")
        })
        .collect()
}

fn topics(n: usize, rng: &mut Rng) -> Vec<String> {
    (0..n)
        .map(|_| {
            format!(
                "site/s{}/device/d{}/m{}",
                rng.below(100),
                rng.below(1000),
                rng.below(20)
            )
        })
        .collect()
}

fn bench_match(c: &mut Criterion) {
    let mut group = c.benchmark_group("trie_match");
    for &n in &[1_000usize, 100_000] {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut trie: Trie<u32> = Trie::new();
        for f in filters(n, &mut rng) {
            *trie.entry(&f, || 0) += 1;
        }
        let topics = topics(1024, &mut rng);
        group.throughput(Throughput::Elements(topics.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &topics, |b, topics| {
            b.iter(|| {
                let mut hits = 0u32;
                for t in topics {
                    trie.for_each_match(black_box(t), |v| hits += *v);
                }
                hits
            })
        });
    }
    group.finish();
}

fn bench_churn(c: &mut Criterion) {
    let mut group = c.benchmark_group("trie_churn");
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let base = filters(10_000, &mut rng);
    let churn = filters(1_000, &mut rng);
    let mut trie: Trie<u32> = Trie::new();
    for f in &base {
        *trie.entry(f, || 0) += 1;
    }
    group.throughput(Throughput::Elements(churn.len() as u64 * 2));
    group.bench_function("insert_remove_1000_on_10000", |b| {
        b.iter(|| {
            for f in &churn {
                *trie.entry(f, || 0) += 1;
            }
            for f in &churn {
                trie.update_remove(f, |v| {
                    *v -= 1;
                    *v == 0
                });
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_match, bench_churn);
criterion_main!(benches);
