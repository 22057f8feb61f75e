//! Correctness counting: which sequence numbers each subscriber saw from each publisher, and,
//! at the end, losses, duplicates and out-of-order deliveries per (publisher, delivery unit).
//! Pure data; the worker feeds it, the coordinator merges it.
//!
//! Worked example: publisher 0 sent 0..6; the subscriber saw `0 1 3 2 3 5`.
//! - `3` after `1` skipped `2`; `2` then arrives late: one out-of-order delivery;
//! - the second `3` is a duplicate;
//! - `4` never came and the broker acknowledged it: one loss (unless it was still unacknowledged
//!   when the drain period ended: then it is "unconfirmed", not lost).
//!
//! A delivery unit is one subscriber, or a whole `$share` group: a shared message must reach
//! exactly one member, so the members' trackers are unioned, and a message two members both got
//! counts as a duplicate.

use std::collections::{HashMap, VecDeque};

/// Widest gap tolerated between the lowest unseen and the highest seen sequence number (bits):
/// 2^28 bits = 32 MiB. Past it a stamp is treated as corrupt rather than allocating more.
const MAX_WINDOW_BITS: u64 = 1 << 28;

/// What one subscriber saw of one publisher's sequence. Lives on the subscriber's worker, then
/// moves to the coordinator in the final report.
///
/// Memory stays small when deliveries arrive in order: every number below `base` was seen, and
/// only the window above it is a bitmap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqTracker {
    /// Every sequence number below this was seen. Always a multiple of 64.
    base: u64,
    /// Bit `i` of word `k`: sequence `base + 64k + i` was seen.
    words: VecDeque<u64>,
    /// Highest sequence number seen, to recognise late (out-of-order) arrivals.
    max_seen: Option<u64>,
    /// Distinct sequence numbers seen.
    pub distinct: u64,
    /// Deliveries of a number already seen.
    pub duplicates: u64,
    /// First deliveries of a number lower than one already seen.
    pub out_of_order: u64,
}

/// The verdict on one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time, in order.
    New,
    /// First time, but a higher number was already seen.
    Late,
    /// Seen before.
    Duplicate,
    /// Absurdly far ahead of the window: a corrupt stamp, not recorded.
    OutOfRange,
}

impl SeqTracker {
    /// Records one delivery of `seq`.
    pub fn record(&mut self, seq: u64) -> Seen {
        if seq < self.base {
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        let offset = seq - self.base;
        if offset >= MAX_WINDOW_BITS {
            return Seen::OutOfRange;
        }
        let (word, bit) = ((offset / 64) as usize, offset % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        if self.words[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        self.words[word] |= 1 << bit;
        self.distinct += 1;
        let late = self.max_seen.is_some_and(|m| seq < m);
        if late {
            self.out_of_order += 1;
        } else {
            self.max_seen = Some(seq);
        }
        self.compact();
        if late {
            Seen::Late
        } else {
            Seen::New
        }
    }

    /// Drops full words from the front of the window.
    fn compact(&mut self) {
        while self.words.front() == Some(&u64::MAX) {
            self.words.pop_front();
            self.base += 64;
        }
    }

    /// Whether `seq` was seen.
    pub fn contains(&self, seq: u64) -> bool {
        if seq < self.base {
            return true;
        }
        let offset = seq - self.base;
        let word = (offset / 64) as usize;
        self.words
            .get(word)
            .is_some_and(|w| w & (1 << (offset % 64)) != 0)
    }

    /// How many of `0..n` were seen.
    pub fn seen_below(&self, n: u64) -> u64 {
        if n <= self.base {
            return n;
        }
        let mut count = self.base;
        for (k, w) in self.words.iter().enumerate() {
            let start = self.base + 64 * k as u64;
            if start >= n {
                break;
            }
            let bits = (n - start).min(64);
            let mask = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            count += u64::from((w & mask).count_ones());
        }
        count
    }

    /// Adds `other`'s deliveries to this one (set union). A number both saw is a duplicate: a
    /// shared-subscription message delivered to two members.
    pub fn union(&mut self, other: &SeqTracker) {
        let overlap = other.distinct + self.distinct;
        // Align both windows on the lower base, then OR word by word.
        let base = self.base.min(other.base);
        let mut merged: VecDeque<u64> = VecDeque::new();
        let len_of = |t: &SeqTracker| ((t.base - base) / 64) as usize + t.words.len();
        merged.resize(len_of(self).max(len_of(other)), 0);
        for t in [&*self, other] {
            let full = ((t.base - base) / 64) as usize;
            for w in merged.iter_mut().take(full) {
                *w = u64::MAX;
            }
            for (k, w) in t.words.iter().enumerate() {
                merged[full + k] |= w;
            }
        }
        self.base = base;
        self.words = merged;
        self.compact();
        let union_distinct = self.seen_below(u64::MAX);
        self.distinct = union_distinct;
        self.duplicates += other.duplicates + (overlap - union_distinct);
        self.out_of_order += other.out_of_order;
        self.max_seen = match (self.max_seen, other.max_seen) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// What a publisher did, reported by its worker when publishing stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublisherOutcome {
    /// Messages `0..sent` were written to the socket.
    pub sent: u64,
    /// Sequence numbers the broker never confirmed (QoS 1/2 still in flight when the drain
    /// ended) or refused (MQTT 5 reason code ≥ 0x80): not counted as lost if missing.
    pub uncertain: Vec<u64>,
}

/// Losses and friends over a whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Correctness {
    /// Deliveries owed: for each (publisher, unit that should get it), the messages sent.
    pub expected: u64,
    /// Distinct deliveries of those.
    pub delivered: u64,
    /// Confirmed messages a unit never got.
    pub lost: u64,
    /// Unconfirmed messages a unit never got (not losses).
    pub unconfirmed: u64,
    /// Repeated deliveries (to one subscriber, or to two members of a group).
    pub duplicates: u64,
    /// First deliveries that arrived after a higher sequence number.
    pub out_of_order: u64,
    /// Deliveries to a subscriber that should not have received that publisher at all.
    pub unexpected: u64,
}

/// Accounts a run: `publishers[p]` is publisher `p`'s outcome; `units[u]` lists the subscriber ids
/// of delivery unit `u`; `expects(p, u)` says whether unit `u` should get publisher `p`'s
/// messages; `trackers` maps (subscriber, publisher) to what that subscriber saw.
pub fn account(
    publishers: &[PublisherOutcome],
    units: &[Vec<u32>],
    expects: impl Fn(u32, usize) -> bool,
    trackers: &HashMap<(u32, u32), SeqTracker>,
) -> Correctness {
    let mut c = Correctness::default();
    let mut unit_of: HashMap<u32, usize> = HashMap::new();
    for (u, members) in units.iter().enumerate() {
        for &s in members {
            unit_of.insert(s, u);
        }
    }
    for (&(sub, publisher), t) in trackers {
        let wanted = unit_of
            .get(&sub)
            .is_some_and(|&u| expects(publisher, u) && (publisher as usize) < publishers.len());
        if !wanted {
            c.unexpected += t.distinct + t.duplicates;
        }
    }
    for (p, outcome) in publishers.iter().enumerate() {
        let p = p as u32;
        for (u, members) in units.iter().enumerate() {
            if !expects(p, u) {
                continue;
            }
            let mut seen = SeqTracker::default();
            for s in members {
                if let Some(t) = trackers.get(&(*s, p)) {
                    seen.union(t);
                }
            }
            let got = seen.seen_below(outcome.sent);
            let missing = outcome.sent - got;
            let unconfirmed = outcome
                .uncertain
                .iter()
                .filter(|&&s| s < outcome.sent && !seen.contains(s))
                .count() as u64;
            c.expected += outcome.sent;
            c.delivered += got;
            c.unconfirmed += unconfirmed;
            c.lost += missing - unconfirmed;
            c.duplicates += seen.duplicates;
            c.out_of_order += seen.out_of_order;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(seqs: &[u64]) -> SeqTracker {
        let mut t = SeqTracker::default();
        for &s in seqs {
            t.record(s);
        }
        t
    }

    #[test]
    fn in_order_deliveries_keep_no_window() {
        let t = tracker(&(0..1000).collect::<Vec<_>>());
        assert_eq!(t.distinct, 1000);
        assert_eq!((t.duplicates, t.out_of_order), (0, 0));
        assert_eq!(t.base, 960);
        assert!(t.words.len() <= 1);
        assert_eq!(t.seen_below(1000), 1000);
        assert_eq!(t.seen_below(2000), 1000);
    }

    #[test]
    fn worked_example_gap_late_and_duplicate() {
        let mut t = SeqTracker::default();
        let verdicts: Vec<Seen> = [0, 1, 3, 2, 3, 5].iter().map(|&s| t.record(s)).collect();
        use Seen::*;
        assert_eq!(verdicts, [New, New, New, Late, Duplicate, New]);
        assert_eq!(t.distinct, 5);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.out_of_order, 1);
        assert!(!t.contains(4));
        assert_eq!(t.seen_below(6), 5);
    }

    #[test]
    fn duplicate_below_compacted_base_is_detected() {
        let mut t = tracker(&(0..200).collect::<Vec<_>>());
        assert_eq!(t.record(5), Seen::Duplicate);
        assert_eq!(t.duplicates, 1);
    }

    #[test]
    fn corrupt_sequence_far_ahead_is_not_recorded() {
        let mut t = SeqTracker::default();
        assert_eq!(t.record(u64::MAX / 2), Seen::OutOfRange);
        assert_eq!(t.distinct, 0);
        assert!(t.words.is_empty());
    }

    #[test]
    fn union_of_shared_members_counts_overlap_as_duplicate() {
        // Member A got evens, member B odds and also 10 (which A had too).
        let mut a = tracker(&(0..200).filter(|s| s % 2 == 0).collect::<Vec<_>>());
        let b = tracker(
            &(0..200)
                .filter(|s| s % 2 == 1)
                .chain([10])
                .collect::<Vec<_>>(),
        );
        a.union(&b);
        assert_eq!(a.distinct, 200);
        assert_eq!(a.duplicates, 1);
        assert_eq!(a.seen_below(200), 200);
    }

    #[test]
    fn union_with_different_bases() {
        let mut a = tracker(&(0..130).collect::<Vec<_>>());
        let b = tracker(&[300, 301]);
        a.union(&b);
        assert_eq!(a.distinct, 132);
        assert!(a.contains(129) && a.contains(301) && !a.contains(200));
        let mut c = tracker(&[5]);
        c.union(&tracker(&(0..130).collect::<Vec<_>>()));
        assert_eq!((c.distinct, c.duplicates), (130, 1));
    }

    fn fan_out_units(subs: u32) -> Vec<Vec<u32>> {
        (0..subs).map(|s| vec![s]).collect()
    }

    #[test]
    fn account_reports_loss_per_subscriber() {
        let publishers = vec![PublisherOutcome {
            sent: 10,
            uncertain: vec![],
        }];
        let mut trackers = HashMap::new();
        trackers.insert((0, 0), tracker(&(0..10).collect::<Vec<_>>()));
        trackers.insert((1, 0), tracker(&[0, 1, 2, 4, 4, 5, 6, 7, 8, 9]));
        let c = account(&publishers, &fan_out_units(2), |_, _| true, &trackers);
        assert_eq!(c.expected, 20);
        assert_eq!(c.delivered, 19);
        assert_eq!(c.lost, 1);
        assert_eq!(c.duplicates, 1);
        assert_eq!(c.unexpected, 0);
    }

    #[test]
    fn account_missing_subscriber_loses_everything() {
        let publishers = vec![PublisherOutcome {
            sent: 3,
            uncertain: vec![],
        }];
        let c = account(&publishers, &fan_out_units(1), |_, _| true, &HashMap::new());
        assert_eq!((c.expected, c.lost), (3, 3));
    }

    #[test]
    fn account_unconfirmed_messages_are_not_losses() {
        // Seqs 8 and 9 were still unacknowledged; 9 arrived anyway, 8 did not.
        let publishers = vec![PublisherOutcome {
            sent: 10,
            uncertain: vec![8, 9],
        }];
        let mut trackers = HashMap::new();
        trackers.insert((0, 0), tracker(&[0, 1, 2, 3, 4, 5, 6, 7, 9]));
        let c = account(&publishers, &fan_out_units(1), |_, _| true, &trackers);
        assert_eq!((c.lost, c.unconfirmed, c.delivered), (0, 1, 9));
    }

    #[test]
    fn account_pairs_flags_crossed_deliveries_as_unexpected() {
        let publishers = vec![
            PublisherOutcome {
                sent: 2,
                uncertain: vec![],
            };
            2
        ];
        let mut trackers = HashMap::new();
        trackers.insert((0, 0), tracker(&[0, 1]));
        trackers.insert((1, 1), tracker(&[0, 1]));
        trackers.insert((1, 0), tracker(&[0]));
        let c = account(
            &publishers,
            &fan_out_units(2),
            |p, u| p as usize == u,
            &trackers,
        );
        assert_eq!((c.expected, c.lost, c.unexpected), (4, 0, 1));
    }

    #[test]
    fn account_shared_group_is_one_unit() {
        let publishers = vec![PublisherOutcome {
            sent: 6,
            uncertain: vec![],
        }];
        let mut trackers = HashMap::new();
        trackers.insert((0, 0), tracker(&[0, 2, 4]));
        trackers.insert((1, 0), tracker(&[1, 3, 4]));
        let c = account(&publishers, &[vec![0, 1]], |_, _| true, &trackers);
        assert_eq!(c.expected, 6);
        assert_eq!(c.lost, 1); // 5
        assert_eq!(c.duplicates, 1); // 4 went to both members
    }

    #[test]
    fn account_counts_out_of_order() {
        let publishers = vec![PublisherOutcome {
            sent: 4,
            uncertain: vec![],
        }];
        let mut trackers = HashMap::new();
        trackers.insert((0, 0), tracker(&[0, 2, 1, 3]));
        let c = account(&publishers, &fan_out_units(1), |_, _| true, &trackers);
        assert_eq!((c.lost, c.out_of_order, c.duplicates), (0, 1, 0));
    }
}
