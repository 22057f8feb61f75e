//! A topic index: values stored under exact topic names, found by topic filter — the inverse of
//! `Trie` (which stores filters and is searched by topic). It holds the retained messages, which a
//! SUBSCRIBE looks up by its filter: the walk visits only the branches the filter can match, not
//! every retained message.
//!
//! Worked example, topics `a/b`, `a/c/d`, `a`, `$SYS/x` and filter `a/+`:
//! ```text
//! root ─ "a" (value: a) ─ "b" (value: a/b)
//!      │               └ "c" ─ "d" (value: a/c/d)
//!      └ "$SYS" ─ "x" (value: $SYS/x)
//! ```
//! `a` → exact child "a"; `+` → every child of "a" with a value at the end of the filter: `a/b`
//! (and "c" has no value of its own). Filter `a/#` gives `a`, `a/b` and `a/c/d` (`#` matches the
//! parent level too [MQTT-4.7.1-2]); `#` and `+/x` give everything but `$SYS/x` [MQTT-4.7.2-1].
//!
//! Pure and shard-local: no locks, no clock.

use std::collections::HashMap;

/// Topic name → `V`, searched by topic filter.
#[derive(Debug)]
pub struct TopicIndex<V> {
    root: Node<V>,
    len: usize,
}

#[derive(Debug)]
struct Node<V> {
    children: HashMap<Box<str>, Node<V>>,
    value: Option<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            children: HashMap::new(),
            value: None,
        }
    }
}

impl<V> Default for TopicIndex<V> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<V> TopicIndex<V> {
    /// Number of topics holding a value.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `value` under `topic` (a validated topic name), returning the value it replaces.
    pub fn insert(&mut self, topic: &str, value: V) -> Option<V> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        let old = node.value.replace(value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the value under `topic`, and the branches it leaves empty.
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        let levels: Vec<&str> = topic.split('/').collect();
        let removed = Self::remove_rec(&mut self.root, &levels);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    fn remove_rec(node: &mut Node<V>, levels: &[&str]) -> Option<V> {
        let Some((level, rest)) = levels.split_first() else {
            return node.value.take();
        };
        let child = node.children.get_mut(*level)?;
        let removed = Self::remove_rec(child, rest);
        if child.value.is_none() && child.children.is_empty() {
            node.children.remove(*level);
        }
        removed
    }

    /// The value under exactly `topic`.
    pub fn get(&self, topic: &str) -> Option<&V> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.value.as_ref()
    }

    /// Calls `f` with every value whose topic `filter` (a validated filter, without `$share/`)
    /// matches.
    pub fn for_each_match(&self, filter: &str, mut f: impl FnMut(&V)) {
        let levels: Vec<&str> = filter.split('/').collect();
        Self::match_rec(&self.root, &levels, true, &mut f);
    }

    fn match_rec(node: &Node<V>, levels: &[&str], at_root: bool, f: &mut impl FnMut(&V)) {
        let Some((level, rest)) = levels.split_first() else {
            if let Some(v) = &node.value {
                f(v);
            }
            return;
        };
        // [MQTT-4.7.2-1] a filter starting with a wildcard matches no topic starting with `$`.
        let visible = |name: &str| !(at_root && name.starts_with('$'));
        match *level {
            "#" => {
                // [MQTT-4.7.1-2] `#` matches the parent level and everything below it.
                if !at_root {
                    if let Some(v) = &node.value {
                        f(v);
                    }
                }
                for (name, child) in &node.children {
                    if visible(name) {
                        Self::every_value(child, f);
                    }
                }
            }
            "+" => {
                for (name, child) in &node.children {
                    if visible(name) {
                        Self::match_rec(child, rest, false, f);
                    }
                }
            }
            exact => {
                if let Some(child) = node.children.get(exact) {
                    Self::match_rec(child, rest, false, f);
                }
            }
        }
    }

    fn every_value(node: &Node<V>, f: &mut impl FnMut(&V)) {
        if let Some(v) = &node.value {
            f(v);
        }
        for child in node.children.values() {
            Self::every_value(child, f);
        }
    }

    /// Calls `f` on every value, `$` topics included.
    pub fn for_each(&self, mut f: impl FnMut(&V)) {
        Self::every_value(&self.root, &mut f);
    }

    /// Keeps only the values `keep` accepts (and prunes the branches left empty).
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        let removed = Self::retain_rec(&mut self.root, &mut keep);
        self.len -= removed;
    }

    fn retain_rec(node: &mut Node<V>, keep: &mut impl FnMut(&V) -> bool) -> usize {
        let mut removed = 0;
        if node.value.as_ref().is_some_and(|v| !keep(v)) {
            node.value = None;
            removed += 1;
        }
        node.children.retain(|_, child| {
            removed += Self::retain_rec(child, keep);
            child.value.is_some() || !child.children.is_empty()
        });
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::Trie;

    const TOPICS: &[&str] = &[
        "a",
        "a/b",
        "a/c",
        "a/b/c",
        "a/c/d",
        "/",
        "/x",
        "x/",
        "b",
        "$SYS",
        "$SYS/x",
        "$SYS/x/y",
        "a//b",
        "sport/tennis/player1",
    ];
    const FILTERS: &[&str] = &[
        "#",
        "+",
        "+/+",
        "a",
        "a/+",
        "a/#",
        "a/+/c",
        "+/b",
        "/+",
        "+/",
        "$SYS/#",
        "$SYS/+",
        "a//b",
        "a/+/+",
        "sport/#",
        "sport/tennis/#",
        "+/tennis/+",
        "x/#",
        "nothing",
    ];

    fn index() -> TopicIndex<String> {
        let mut index = TopicIndex::default();
        for t in TOPICS {
            index.insert(t, t.to_string());
        }
        index
    }

    /// The index agrees with the subscription trie on every (filter, topic) pair: both implement
    /// the same matching rules from opposite sides.
    #[test]
    fn matches_exactly_what_the_trie_matches() {
        let index = index();
        assert_eq!(index.len(), TOPICS.len());
        for filter in FILTERS {
            let mut found: Vec<String> = Vec::new();
            index.for_each_match(filter, |v| found.push(v.clone()));
            found.sort();
            let mut trie = Trie::new();
            *trie.entry(filter, || 0) += 1;
            let mut want: Vec<String> = TOPICS
                .iter()
                .filter(|t| {
                    let mut hit = false;
                    trie.for_each_match(t, |_| hit = true);
                    hit
                })
                .map(|t| t.to_string())
                .collect();
            want.sort();
            assert_eq!(found, want, "filter {filter}");
        }
    }

    #[test]
    fn insert_replace_get_remove_and_prune() {
        let mut index = index();
        assert_eq!(index.insert("a/b", "new".into()), Some("a/b".into()));
        assert_eq!(index.get("a/b").map(String::as_str), Some("new"));
        assert_eq!(index.len(), TOPICS.len());
        assert_eq!(index.remove("a/c/d"), Some("a/c/d".into()));
        assert_eq!(index.remove("a/c/d"), None);
        assert_eq!(index.get("a/c/d"), None);
        assert_eq!(index.get("a/c").map(String::as_str), Some("a/c"));
        assert_eq!(index.len(), TOPICS.len() - 1);
        // Removing every topic leaves nothing behind.
        for t in TOPICS {
            index.remove(t);
        }
        assert!(index.is_empty());
        assert!(index.root.children.is_empty(), "{:?}", index.root);
    }

    #[test]
    fn retain_drops_values_and_empty_branches() {
        let mut index = index();
        index.retain(|v| !v.starts_with("a"));
        assert_eq!(index.len(), TOPICS.len() - 6);
        assert!(!index.root.children.contains_key("a"));
        let mut all = Vec::new();
        index.for_each_match("#", |v| all.push(v.clone()));
        assert!(all.iter().all(|t| !t.starts_with('a')), "{all:?}");
    }
}
