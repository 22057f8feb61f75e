//! Which filters the other nodes want, so that a node sends NATS only what some node will take
//! (without it, every message published anywhere would go to NATS to be dropped there).
//!
//! Each node announces the filters its clients subscribe to (plain and shared, counted over its
//! shards; the link thread does the counting) on subject `cmq.i.<node>`: `+` and `-` deltas,
//! and a whole list (`=`, replacing what was known of that node) when it (re)connects to NATS or
//! when another node asks for it on `cmq.s` (which each node does when it (re)connects). A
//! node's shards keep the union of all nodes' filters (and the node's own shared ones: its own
//! members are reached through the NATS queue group too) in a trie, and hand the link thread a
//! message only when its topic matches one. Pure: the link thread does the I/O.
//!
//! A node that dies leaves its filters behind until it comes back with a new list: messages for
//! them still go to NATS, which drops them (a cost, never a loss).

use std::collections::{HashMap, HashSet};

/// Subject prefix of interest announcements (`cmq.i.<node>`).
pub const ANNOUNCE: &str = "cmq.i";
/// Subject of requests for every node's list.
pub const SYNC: &str = "cmq.s";
/// Filters never hold U+0000 [MQTT-1.5.4-2]: the separator of a list.
const SEP: char = '\0';
/// Largest announcement (NATS's default maximum payload is 1 MiB).
const CHUNK: usize = 256 * 1024;

/// One announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announce {
    /// The start of the node's whole list (more may follow in `Add`s); what was known of the
    /// node and is not in the list goes at `End`, so a long list never leaves a gap.
    Replace(Vec<String>),
    Add(Vec<String>),
    Remove(Vec<String>),
    /// The end of a whole list.
    End,
}

impl Announce {
    pub fn encode(&self) -> Vec<u8> {
        let (op, list) = match self {
            Announce::Replace(l) => ('=', l),
            Announce::Add(l) => ('+', l),
            Announce::Remove(l) => ('-', l),
            Announce::End => return b".".to_vec(),
        };
        let mut s = String::with_capacity(1 + list.iter().map(|f| f.len() + 1).sum::<usize>());
        s.push(op);
        for (i, f) in list.iter().enumerate() {
            if i > 0 {
                s.push(SEP);
            }
            s.push_str(f);
        }
        s.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<Announce> {
        let s = std::str::from_utf8(bytes).ok()?;
        let mut chars = s.chars();
        let op = chars.next()?;
        let rest = chars.as_str();
        let list: Vec<String> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split(SEP).map(str::to_string).collect()
        };
        match op {
            '=' => Some(Announce::Replace(list)),
            '+' => Some(Announce::Add(list)),
            '-' => Some(Announce::Remove(list)),
            '.' if list.is_empty() => Some(Announce::End),
            _ => None,
        }
    }

    /// A node's whole list as announcements no larger than `CHUNK`: a `Replace`, `Add`s, `End`.
    pub fn whole_list<'a>(filters: impl Iterator<Item = &'a String>) -> Vec<Announce> {
        let mut out = vec![Announce::Replace(Vec::new())];
        let mut size = 0;
        for f in filters {
            if size + f.len() + 1 > CHUNK {
                out.push(Announce::Add(Vec::new()));
                size = 0;
            }
            size += f.len() + 1;
            match out.last_mut() {
                Some(Announce::Replace(l) | Announce::Add(l) | Announce::Remove(l)) => {
                    l.push(f.clone())
                }
                Some(Announce::End) | None => {}
            }
        }
        out.push(Announce::End);
        out
    }
}

/// The union of the filters every node wants, counted by node (and this node's shared filters),
/// as changes for the shards: a filter goes to them when its count leaves 0 and when it returns.
#[derive(Default)]
pub struct Wanted {
    /// Filters by announcing node.
    by_node: HashMap<String, HashSet<String>>,
    /// A whole list being received, by node (until its `End`).
    incoming: HashMap<String, HashSet<String>>,
    /// This node's own shared filters (its members get messages through the queue group).
    own_shared: HashMap<String, usize>,
    /// Filter → how many of the above want it.
    count: HashMap<String, usize>,
}

/// A change for the shards: `(filter, wanted)`.
pub type Change = (String, bool);

impl Wanted {
    fn up(&mut self, f: &str, out: &mut Vec<Change>) {
        let c = self.count.entry(f.to_string()).or_insert(0);
        *c += 1;
        if *c == 1 {
            out.push((f.to_string(), true));
        }
    }

    fn down(&mut self, f: &str, out: &mut Vec<Change>) {
        if let Some(c) = self.count.get_mut(f) {
            *c -= 1;
            if *c == 0 {
                self.count.remove(f);
                out.push((f.to_string(), false));
            }
        }
    }

    /// Applies an announcement from `node` (never this node's own).
    pub fn apply(&mut self, node: &str, a: Announce, out: &mut Vec<Change>) {
        let mut known = self.by_node.remove(node).unwrap_or_default();
        match a {
            Announce::Replace(list) => {
                self.incoming.insert(node.to_string(), HashSet::new());
                self.add(node, &mut known, list, out);
            }
            Announce::Add(list) => self.add(node, &mut known, list, out),
            Announce::Remove(list) => {
                for f in list {
                    if let Some(inc) = self.incoming.get_mut(node) {
                        inc.remove(&f);
                    }
                    if known.remove(&f) {
                        self.down(&f, out);
                    }
                }
            }
            Announce::End => {
                if let Some(list) = self.incoming.remove(node) {
                    let gone: Vec<String> = known.difference(&list).cloned().collect();
                    for f in gone {
                        known.remove(&f);
                        self.down(&f, out);
                    }
                }
            }
        }
        self.by_node.insert(node.to_string(), known);
    }

    fn add(
        &mut self,
        node: &str,
        known: &mut HashSet<String>,
        list: Vec<String>,
        out: &mut Vec<Change>,
    ) {
        for f in list {
            if let Some(inc) = self.incoming.get_mut(node) {
                inc.insert(f.clone());
            }
            if known.insert(f.clone()) {
                self.up(&f, out);
            }
        }
    }

    /// This node's shared subscription on `filter` gained (`add`) or lost a shard.
    pub fn own_shared(&mut self, filter: &str, add: bool, out: &mut Vec<Change>) {
        let n = self.own_shared.entry(filter.to_string()).or_insert(0);
        if add {
            *n += 1;
            if *n == 1 {
                self.up(filter, out);
            }
        } else if *n > 0 {
            *n -= 1;
            if *n == 0 {
                self.own_shared.remove(filter);
                self.down(filter, out);
            }
        }
    }

    /// Every filter wanted now (for a shard that starts late or was told nothing yet).
    pub fn all(&self) -> impl Iterator<Item = &String> {
        self.count.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn announcements_round_trip() {
        for a in [
            Announce::Replace(list(&["a/#", "b/+/c", ""])),
            Announce::Add(list(&["x"])),
            Announce::Remove(Vec::new()),
            Announce::End,
        ] {
            assert_eq!(Announce::decode(&a.encode()), Some(a));
        }
        assert_eq!(Announce::decode(b"?a"), None);
    }

    #[test]
    fn a_filter_is_wanted_while_any_node_wants_it() {
        let mut w = Wanted::default();
        let mut out = Vec::new();
        w.apply("n2", Announce::Add(list(&["a/#", "b"])), &mut out);
        w.apply("n3", Announce::Add(list(&["a/#"])), &mut out);
        assert_eq!(out, vec![("a/#".into(), true), ("b".into(), true)]);
        out.clear();
        w.apply("n2", Announce::Remove(list(&["a/#"])), &mut out);
        assert!(out.is_empty(), "n3 still wants it");
        // n3 comes back with a new list: what it no longer has goes at the list's end, never
        // before (a long list comes in several parts).
        w.apply("n3", Announce::Replace(list(&["c"])), &mut out);
        assert_eq!(out, vec![("c".into(), true)]);
        w.apply("n3", Announce::Add(list(&["e"])), &mut out);
        w.apply("n3", Announce::End, &mut out);
        assert_eq!(
            out,
            vec![
                ("c".into(), true),
                ("e".into(), true),
                ("a/#".into(), false)
            ]
        );
        out.clear();
        w.own_shared("b", true, &mut out);
        w.own_shared("d", true, &mut out);
        w.own_shared("d", true, &mut out);
        w.own_shared("d", false, &mut out);
        assert_eq!(out, vec![("d".into(), true)]);
        let mut all: Vec<_> = w.all().cloned().collect();
        all.sort();
        assert_eq!(all, list(&["b", "c", "d", "e"]));
    }

    #[test]
    fn a_long_list_goes_in_chunks() {
        let filters: Vec<String> = (0..30_000).map(|i| format!("sensors/{i:08}/#")).collect();
        let chunks = Announce::whole_list(filters.iter());
        assert!(chunks.len() > 2);
        assert_eq!(chunks.last(), Some(&Announce::End));
        assert!(chunks.iter().all(|c| c.encode().len() <= CHUNK + 64));
        let mut w = Wanted::default();
        let mut out = Vec::new();
        for c in chunks {
            w.apply("n2", c, &mut out);
        }
        assert_eq!(out.len(), filters.len());
    }
}
