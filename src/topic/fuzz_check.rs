//! The topic rules' invariants on arbitrary bytes: the one check shared by the `topic` fuzz target
//! (`fuzz/fuzz_targets/topic.rs`) and the corpus replay test (`tests/fuzz_corpus.rs`), so the two
//! can never drift apart. Not part of the broker (hidden from the docs).
//!
//! It never panics itself: a broken invariant comes back as `Err(description)` and the caller
//! panics. A panic inside the validators or the trie is what the fuzzer is looking for.
//!
//! The input is split at `\n` into at most `MAX_PARTS` strings. Then:
//! - `MqttString::from_bytes`, `TopicName::new` and `TopicFilter::new` accept exactly what a
//!   plain reading of the rules, written out again here, accepts: well-formed UTF-8 without
//!   U+0000 [MQTT-1.5.4-1] [MQTT-1.5.4-2]; a name is non-empty [MQTT-4.7.3-1] without wildcards
//!   [MQTT-3.3.2-2]; a filter is non-empty, `#` alone in the last level [MQTT-4.7.1-1], `+` alone
//!   in its level [MQTT-4.7.1-2], and a `$share/` filter has a non-empty share name without
//!   wildcards, then `/` and a filter [MQTT-4.8.2-1] [MQTT-4.8.2-2];
//! - a valid filter is its share prefix, share name and filter put back together;
//! - every valid filter (without its share prefix) goes into one `Trie`. For every topic — the
//!   parts that are valid names, and for each filter a topic made by filling in its wildcards —
//!   the trie reports exactly the filters the `TopicIndex` (the retained store's matcher, searched
//!   from the other side) finds the topic with, and both agree with a recursive reference matcher
//!   (which also applies [MQTT-4.7.2-1] to `$` topics);
//! - a filter matches the topic made from it;
//! - removing every filter empties the trie.

use bytes::Bytes;

use super::{TopicIndex, Trie};
use crate::protocol::{MqttString, TopicFilter, TopicName, SHARE_PREFIX};

/// Whether `filter` finds `topic` in a `TopicIndex` holding that topic alone.
fn matches(filter: &str, topic: &str) -> bool {
    let mut index = TopicIndex::default();
    index.insert(topic, ());
    let mut hit = false;
    index.for_each_match(filter, |_| hit = true);
    hit
}

/// Strings taken from one input (more would only slow the fuzzer down: the check is quadratic).
pub const MAX_PARTS: usize = 48;

/// What one `check` saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Parts that are valid topic names.
    pub names: usize,
    /// Parts that are valid topic filters.
    pub filters: usize,
    /// (filter, topic) pairs that match.
    pub matches: usize,
    /// (filter, topic) pairs that do not.
    pub misses: usize,
}

/// Runs every invariant of the module docs on `data`.
pub fn check(data: &[u8]) -> Result<Summary, String> {
    let mut summary = Summary::default();
    let mut names: Vec<String> = Vec::new();
    let mut filters: Vec<TopicFilter> = Vec::new();
    for part in data.split(|&b| b == b'\n').take(MAX_PARTS) {
        let shown = String::from_utf8_lossy(part);
        let string = MqttString::from_bytes(Bytes::copy_from_slice(part));
        let text = std::str::from_utf8(part).ok().filter(|s| !s.contains('\0'));
        if string.is_ok() != text.is_some() {
            return Err(format!("MqttString validation of {shown:?}: {string:?}"));
        }
        let (Ok(string), Some(text)) = (string, text) else {
            continue;
        };
        let name = TopicName::new(string.clone());
        if name.is_ok() != reference_name(text) {
            return Err(format!("TopicName::new({shown:?}) = {name:?}"));
        }
        let filter = TopicFilter::new(string);
        if filter.is_ok() != reference_filter(text) {
            return Err(format!("TopicFilter::new({shown:?}) = {filter:?}"));
        }
        if let Ok(n) = name {
            if n.as_str() != text || n.is_system() != text.starts_with('$') {
                return Err(format!("TopicName {n:?} is not {shown:?}"));
            }
            summary.names += 1;
            names.push(text.to_string());
        }
        if let Ok(f) = filter {
            let rebuilt = match f.share_name() {
                Some(group) => format!("{SHARE_PREFIX}{group}/{}", f.filter()),
                None => f.filter().to_string(),
            };
            if rebuilt != text || f.as_str() != text || f.is_shared() != f.share_name().is_some() {
                return Err(format!(
                    "TopicFilter {shown:?} splits into {:?} + {:?}",
                    f.share_name(),
                    f.filter()
                ));
            }
            if f.has_wildcards() != f.filter().contains(['+', '#']) {
                return Err(format!("has_wildcards of {shown:?}"));
            }
            summary.filters += 1;
            filters.push(f);
        }
    }
    check_matching(&filters, names, &mut summary)?;
    Ok(summary)
}

fn check_matching(
    filters: &[TopicFilter],
    mut topics: Vec<String>,
    summary: &mut Summary,
) -> Result<(), String> {
    let mut trie: Trie<Vec<usize>> = Trie::new();
    let mut distinct: Vec<&str> = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        trie.entry(f.filter(), Vec::new).push(i);
        if !distinct.contains(&f.filter()) {
            distinct.push(f.filter());
        }
        let filled = fill_wildcards(f.filter());
        if !matches(f.filter(), &filled) {
            return Err(format!("{:?} does not match {filled:?}", f.filter()));
        }
        if TopicName::copy_from(&filled).is_err() {
            return Err(format!(
                "{filled:?}, made from {:?}, is not a name",
                f.filter()
            ));
        }
        topics.push(filled);
    }
    if trie.len() != distinct.len() {
        return Err(format!(
            "trie.len() = {} for {} distinct filters",
            trie.len(),
            distinct.len()
        ));
    }
    for f in &distinct {
        if trie.get(f).is_none() {
            return Err(format!("trie.get({f:?}) = None after inserting it"));
        }
    }
    for topic in &topics {
        let mut by_trie: Vec<usize> = Vec::new();
        trie.for_each_match(topic, |ids| by_trie.extend_from_slice(ids));
        by_trie.sort_unstable();
        let mut by_matches = Vec::new();
        for (i, f) in filters.iter().enumerate() {
            let m = matches(f.filter(), topic);
            if m != reference_matches(f.filter(), topic) {
                return Err(format!("matches({:?}, {topic:?}) = {m}", f.filter()));
            }
            if m {
                by_matches.push(i);
                summary.matches += 1;
            } else {
                summary.misses += 1;
            }
        }
        if by_trie != by_matches {
            return Err(format!(
                "topic {topic:?}: the trie matches filters {by_trie:?}, `matches` {by_matches:?} \
                 of {filters:?}"
            ));
        }
    }
    for f in &distinct {
        if !trie.update_remove(f, |_| true) {
            return Err(format!("update_remove({f:?}) found nothing"));
        }
    }
    if !trie.is_empty() {
        return Err(format!("{} filters left after removing all", trie.len()));
    }
    for topic in &topics {
        let mut hit = false;
        trie.for_each_match(topic, |_| hit = true);
        if hit {
            return Err(format!("the emptied trie still matches {topic:?}"));
        }
    }
    Ok(())
}

/// [MQTT-4.7.3-1] non-empty; [MQTT-3.3.2-2] no wildcard characters.
fn reference_name(s: &str) -> bool {
    !s.is_empty() && !s.contains('+') && !s.contains('#')
}

/// [MQTT-4.8.2-1] [MQTT-4.8.2-2] shared syntax, then [MQTT-4.7.3-1] [MQTT-4.7.1-1] [MQTT-4.7.1-2].
fn reference_filter(s: &str) -> bool {
    let filter = match s.strip_prefix(SHARE_PREFIX) {
        None => s,
        Some(rest) => match rest.split_once('/') {
            Some((name, f)) if !name.is_empty() && !name.contains('+') && !name.contains('#') => f,
            _ => return false,
        },
    };
    let levels: Vec<&str> = filter.split('/').collect();
    !filter.is_empty()
        && levels.iter().enumerate().all(|(i, level)| {
            let hash_ok = !level.contains('#') || (*level == "#" && i + 1 == levels.len());
            let plus_ok = !level.contains('+') || *level == "+";
            hash_ok && plus_ok
        })
}

/// Level-by-level recursion over the two level lists; wildcards at the first level never match a
/// topic starting with `$` [MQTT-4.7.2-1].
fn reference_matches(filter: &str, topic: &str) -> bool {
    fn rec(f: &[&str], t: &[&str]) -> bool {
        match (f, t) {
            (["#"], _) => true,
            (["+", f @ ..], [_, t @ ..]) => rec(f, t),
            ([fl, f @ ..], [tl, t @ ..]) => fl == tl && rec(f, t),
            ([], []) => true,
            _ => false,
        }
    }
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    rec(&f, &t)
}

/// A topic `filter` matches: `+` filled with a level, a trailing `#` with two levels.
fn fill_wildcards(filter: &str) -> String {
    filter
        .split('/')
        .map(|level| match level {
            "+" => "p",
            "#" => "h/i",
            other => other,
        })
        .collect::<Vec<_>>()
        .join("/")
}
