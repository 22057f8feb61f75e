//! Topics: the validated `TopicName` / `TopicFilter` newtypes (defined by the codec, which must
//! validate them on the wire), the shard-local subscription `Trie` (filters, searched by topic)
//! and the `TopicIndex` (topics, searched by filter: the retained messages).
//!
//! Pure and shard-local: `Rc`/`RefCell` at most, never locks or atomics; no clock reads.

#[doc(hidden)]
pub mod fuzz_check;
mod index;
mod trie;

pub use crate::protocol::{TopicFilter, TopicName};
pub use index::TopicIndex;
pub use trie::Trie;

/// Whether `filter` (without `$share/` prefix) matches `topic`, by the trie's rules: the one
/// answer tests elsewhere compare against.
#[cfg(test)]
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut trie = Trie::new();
    trie.entry(filter, || ());
    let mut hit = false;
    trie.for_each_match(topic, |_| hit = true);
    hit
}
