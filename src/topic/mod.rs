//! Topics: the validated `TopicName` / `TopicFilter` newtypes (defined by the codec, which must
//! validate them on the wire) and the shard-local subscription `Trie`.
//!
//! Pure and shard-local: `Rc`/`RefCell` at most, never locks or atomics; no clock reads.

#[doc(hidden)]
pub mod fuzz_check;
mod trie;

pub use crate::protocol::{TopicFilter, TopicName};
pub use trie::Trie;

/// Whether `filter` (without `$share/` prefix) matches `topic` — one filter, no trie; used for
/// retained messages on subscribe. Same rules as `Trie::for_each_match`, including
/// [MQTT-4.7.2-1] for `$` topics.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_filter_matching_agrees_with_the_trie() {
        let cases = [
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("a/+", "a", false),
            ("a/+", "a/b", true),
            ("+/+", "/x", true),
            ("#", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("a/b", "a/b/c", false),
            ("a/b/c", "a/b", false),
        ];
        for (filter, topic, want) in cases {
            assert_eq!(matches(filter, topic), want, "{filter} {topic}");
            let mut trie = Trie::new();
            *trie.entry(filter, || 0) += 1;
            let mut hit = false;
            trie.for_each_match(topic, |_| hit = true);
            assert_eq!(hit, want, "trie {filter} {topic}");
        }
    }
}
