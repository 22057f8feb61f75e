//! Latency recording and the open-loop send schedule.
//!
//! - Histograms hold microseconds, 3 significant digits, 1 µs .. 60 s (larger values saturate);
//!   each worker records into its own and the coordinator merges them with [`merge`].
//! - [`Pacer`] is the open-loop (`--rate`) schedule. Message `i` of a publisher has an *intended*
//!   send time fixed in advance; the stamp carries that time, not the moment the socket took the
//!   bytes. When the load tester or the broker stalls, the messages that should have gone out
//!   during the stall are sent late but still measured from their intended time, so the stall
//!   shows in the percentiles instead of being hidden (coordinated omission).
//!
//! Worked example: 2 publishers sharing `--rate 1000` each send 500 msg/s, one every 2 ms,
//! staggered by 1 ms: publisher 0 at 0, 2, 4 ms…, publisher 1 at 1, 3, 5 ms…. If publisher 0's
//! thread stalls from 0 to 10 ms, at 10 ms messages 0..=5 are all due; message 0 is stamped 0 ms
//! and, received at 10.2 ms, records 10.2 ms of latency.

use hdrhistogram::Histogram;

/// Highest latency kept exactly, in microseconds; larger values are recorded as this.
pub const MAX_US: u64 = 60_000_000;

/// A new, empty latency histogram (microseconds).
pub fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, MAX_US, 3) {
        Ok(h) => h,
        Err(e) => unreachable!("constant histogram bounds are valid: {e:?}"),
    }
}

/// Adds every value of `from` into `into`. Both come from [`new_histogram`], so the ranges
/// match and addition cannot fail.
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if let Err(e) = into.add(from) {
        unreachable!("histograms with equal bounds add: {e:?}");
    }
}

/// Latency in microseconds between a (possibly intended) send time and a receive time, both in
/// nanoseconds since the run's epoch. A receive "before" the send (impossible on one monotonic
/// clock) counts as 0.
pub fn latency_us(sent_ns: u64, received_ns: u64) -> u64 {
    received_ns.saturating_sub(sent_ns) / 1_000
}

/// The figures the reports print, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// The open-loop schedule of one publisher: `rate` messages per second shared by `publishers`
/// publishers, this one being number `index` among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacer {
    /// When message 0 of publisher 0 is due (ns since the epoch).
    start_ns: u64,
    /// Aggregate rate, messages per second.
    rate: u64,
    /// How many publishers share the rate.
    publishers: u64,
    /// This publisher's place among them (staggers the publishers evenly).
    index: u64,
}

impl Pacer {
    pub fn new(start_ns: u64, rate: u64, publishers: u64, index: u64) -> Self {
        Self {
            start_ns,
            rate: rate.max(1),
            publishers: publishers.max(1),
            index,
        }
    }

    /// When message `i` of this publisher is meant to be sent (ns since the epoch). Computed from
    /// `i` directly, so rounding never accumulates into drift.
    pub fn intended_ns(&self, i: u64) -> u64 {
        // Global slot of message i: i * publishers + index; slot k is due at k / rate seconds.
        let slot = u128::from(i) * u128::from(self.publishers) + u128::from(self.index);
        let offset = slot * 1_000_000_000 / u128::from(self.rate);
        self.start_ns
            .saturating_add(u64::try_from(offset).unwrap_or(u64::MAX))
    }

    /// How many messages (counting from 0) are due by `now_ns`.
    pub fn due_by(&self, now_ns: u64) -> u64 {
        if now_ns < self.start_ns {
            return 0;
        }
        // Slot k is due at floor(k * 1e9 / rate) (see `intended_ns`), which is <= elapsed
        // exactly when k * 1e9 < (elapsed + 1) * rate.
        let elapsed = u128::from(now_ns - self.start_ns);
        let last_slot = ((elapsed + 1) * u128::from(self.rate) - 1) / 1_000_000_000;
        let own = u128::from(self.index);
        if last_slot < own {
            return 0;
        }
        let n = (last_slot - own) / u128::from(self.publishers) + 1;
        u64::try_from(n).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_worker_histograms() {
        let mut a = new_histogram();
        let mut b = new_histogram();
        for v in 1..=900 {
            a.record(v).unwrap();
        }
        for v in 901..=1000 {
            b.record(v).unwrap();
        }
        b.record(50_000).unwrap();
        let mut total = new_histogram();
        merge(&mut total, &a);
        merge(&mut total, &b);
        let p = Percentiles::of(&total);
        assert_eq!(p.count, 1001);
        assert!(total.equivalent(p.p50, 501));
        assert!(total.equivalent(p.p90, 901));
        assert!(total.equivalent(p.max, 50_000));
        // Merging is order independent.
        let mut other = new_histogram();
        merge(&mut other, &b);
        merge(&mut other, &a);
        assert_eq!(Percentiles::of(&other), p);
    }

    #[test]
    fn merging_empty_histograms_reports_zeros() {
        let mut total = new_histogram();
        merge(&mut total, &new_histogram());
        assert_eq!(Percentiles::of(&total), Percentiles::default());
    }

    #[test]
    fn values_beyond_range_saturate() {
        let mut h = new_histogram();
        h.saturating_record(MAX_US * 10);
        assert!(h.equivalent(h.max(), MAX_US));
    }

    #[test]
    fn latency_is_receive_minus_send_in_micros() {
        assert_eq!(latency_us(1_000, 251_000), 250);
        assert_eq!(latency_us(5_000, 1_000), 0);
    }

    #[test]
    fn pacer_staggers_publishers_evenly() {
        // 2 publishers at 1000 msg/s in total: 1 ms apart overall.
        let p0 = Pacer::new(0, 1000, 2, 0);
        let p1 = Pacer::new(0, 1000, 2, 1);
        assert_eq!(p0.intended_ns(0), 0);
        assert_eq!(p1.intended_ns(0), 1_000_000);
        assert_eq!(p0.intended_ns(1), 2_000_000);
        assert_eq!(p1.intended_ns(1), 3_000_000);
    }

    #[test]
    fn pacer_due_count_matches_intended_times() {
        let p = Pacer::new(1_000, 3, 1, 0); // 333.33 ms apart: non-integer period
        assert_eq!(p.due_by(999), 0);
        assert_eq!(p.due_by(1_000), 1);
        for now in [
            1_000,
            333_334_333,
            333_334_334,
            2_000_001_000,
            5_000_000_000,
        ] {
            let n = p.due_by(now);
            assert!(p.intended_ns(n - 1) <= now, "at {now}");
            assert!(p.intended_ns(n) > now, "at {now}");
        }
        // A rate of 3/s has no drift after many messages.
        assert_eq!(p.intended_ns(3_000), 1_000 + 1_000_000_000_000);
    }

    #[test]
    fn coordinated_omission_stall_shows_in_latency() {
        // Worked example of the module docs: publisher 0 of 2 at 1000 msg/s stalls until 10 ms.
        let p = Pacer::new(0, 1000, 2, 0);
        let now = 10_000_000;
        assert_eq!(p.due_by(now), 6); // messages 0, 2, 4, 6, 8, 10 ms
        let received = now + 200_000;
        let mut h = new_histogram();
        for i in 0..p.due_by(now) {
            h.record(latency_us(p.intended_ns(i), received)).unwrap();
        }
        // Measured from the intended time: the first message waited 10.2 ms, not 0.2 ms.
        assert!(h.equivalent(h.max(), 10_200));
        assert!(h.equivalent(h.min(), 200));
        // Measured from the actual send time (all sent at 10 ms) the stall would vanish.
        assert!(latency_us(now, received) == 200);
    }

    #[test]
    fn pacer_before_start_has_nothing_due() {
        let p = Pacer::new(1_000_000, 10, 1, 0);
        assert_eq!(p.due_by(0), 0);
        assert_eq!(p.due_by(999_999), 0);
    }
}
