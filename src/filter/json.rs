//! The JSON side of filtering: `Schema`, the set of field paths that the filters on one shard
//! read, and `extract`, one pass over a payload that validates it as JSON and keeps only the values
//! at those paths. Everything else is skipped without being built, so a large payload costs one
//! scan and a few values, however many filters read it.
//!
//! Worked example: filters `temp > 30` and `a.b[1] == "x"` register paths `temp` (id 0) and
//! `a.b[1]` (id 1):
//! ```text
//! root ─ "temp" (id 0)
//!      └ "a" ─ "b" ─ [1] (id 1)
//! ```
//! Scanning `{"temp": 31, "a": {"b": ["w", "x"]}, "big": [ … ]}` keeps slot 0 = 31 and
//! slot 1 = "x"; `big` is walked (to validate) but nothing in it is kept.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use super::Segment;

/// Nesting deeper than this is treated as not JSON (the scan is recursive).
pub const MAX_JSON_DEPTH: usize = 64;

/// A value found at a registered path.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonValue<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(Cow<'a, str>),
    /// An object or an array: it exists, but compares to nothing.
    Composite,
}

impl JsonValue<'_> {
    /// The same value, owning its string.
    pub fn into_owned(self) -> JsonValue<'static> {
        match self {
            JsonValue::Null => JsonValue::Null,
            JsonValue::Bool(b) => JsonValue::Bool(b),
            JsonValue::Num(n) => JsonValue::Num(n),
            JsonValue::Str(s) => JsonValue::Str(Cow::Owned(s.into_owned())),
            JsonValue::Composite => JsonValue::Composite,
        }
    }
}

#[derive(Debug, Default)]
struct PathNode {
    keys: HashMap<Box<str>, PathNode>,
    indexes: HashMap<u32, PathNode>,
    id: Option<u32>,
}

impl PathNode {
    fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.indexes.is_empty() && self.id.is_none()
    }
}

#[derive(Debug, Default)]
struct Paths {
    root: PathNode,
    /// Per id, how many compiled filters use it.
    refs: Vec<u32>,
    free: Vec<u32>,
}

/// The JSON paths the filters of one shard read (shard-local; cloning shares it). Filters
/// register their paths when compiled and release them when dropped.
#[derive(Debug, Clone, Default)]
pub struct Schema(Rc<RefCell<Paths>>, Rc<Cell<u64>>, Rc<Cell<u64>>);

/// The values a scan found, by path id (sorted; only paths present in the payload, so the cost
/// follows the payload, not the number of paths registered).
pub type Found<'a> = Vec<(u32, JsonValue<'a>)>;

/// The value of path `id` in what a scan found.
pub fn lookup<'f, 'a>(found: &'f [(u32, JsonValue<'a>)], id: u32) -> Option<&'f JsonValue<'a>> {
    found
        .binary_search_by_key(&id, |(i, _)| *i)
        .ok()
        .map(|k| &found[k].1)
}

impl Schema {
    /// The id of `path`, counting one more user.
    pub(super) fn register(&self, path: &[Segment]) -> u32 {
        let mut paths = self.0.borrow_mut();
        let paths = &mut *paths;
        let mut node = &mut paths.root;
        for seg in path {
            node = match seg {
                Segment::Key(k) => node.keys.entry(k.clone()).or_default(),
                Segment::Index(i) => node.indexes.entry(*i).or_default(),
            };
        }
        if node.id.is_none() {
            // A new path: scans made before did not look for it.
            self.2.set(self.2.get() + 1);
        }
        let id = *node.id.get_or_insert_with(|| match paths.free.pop() {
            Some(id) => id,
            None => {
                paths.refs.push(0);
                (paths.refs.len() - 1) as u32
            }
        });
        paths.refs[id as usize] += 1;
        id
    }

    /// One user fewer of `path`; forgets it with the last.
    pub(super) fn release(&self, path: &[Segment]) {
        let mut paths = self.0.borrow_mut();
        let paths = &mut *paths;
        let freed = paths.free.len();
        release_rec(&mut paths.root, path, &mut paths.refs, &mut paths.free);
        if paths.free.len() != freed {
            self.2.set(self.2.get() + 1);
        }
    }

    /// Number of distinct paths registered.
    pub fn len(&self) -> usize {
        let paths = self.0.borrow();
        paths.refs.len() - paths.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Validates `payload` as JSON and returns the values at the registered paths it has, or
    /// `None` when it is not JSON (or nests deeper than `MAX_JSON_DEPTH`). A key given twice
    /// keeps its last value, as serde_json does.
    pub fn extract<'a>(&self, payload: &'a str) -> Option<Found<'a>> {
        self.1.set(self.1.get() + 1);
        let paths = self.0.borrow();
        let mut found = Vec::new();
        let mut s = Scanner {
            b: payload.as_bytes(),
            src: payload,
            i: 0,
            found: &mut found,
        };
        s.ws();
        s.value(Some(&paths.root), 0)?;
        s.ws();
        if s.i != s.b.len() {
            return None;
        }
        found.reverse();
        found.sort_by_key(|(id, _)| *id);
        found.dedup_by_key(|(id, _)| *id);
        Some(found)
    }

    /// Payloads scanned so far with this schema (to check "at most once per message").
    pub fn scans(&self) -> u64 {
        self.1.get()
    }

    /// Changes whenever the set of paths does (a path registered for the first time, or its
    /// last user gone): a scan result is valid for later subjects only under the version it was
    /// made with.
    pub fn version(&self) -> u64 {
        self.2.get()
    }
}

fn release_rec(node: &mut PathNode, path: &[Segment], refs: &mut [u32], free: &mut Vec<u32>) {
    let Some((seg, rest)) = path.split_first() else {
        if let Some(id) = node.id {
            refs[id as usize] -= 1;
            if refs[id as usize] == 0 {
                node.id = None;
                free.push(id);
            }
        }
        return;
    };
    match seg {
        Segment::Key(k) => {
            if let Some(child) = node.keys.get_mut(k) {
                release_rec(child, rest, refs, free);
                if child.is_empty() {
                    node.keys.remove(k);
                }
            }
        }
        Segment::Index(i) => {
            if let Some(child) = node.indexes.get_mut(i) {
                release_rec(child, rest, refs, free);
                if child.is_empty() {
                    node.indexes.remove(i);
                }
            }
        }
    }
}

struct Scanner<'a, 's> {
    b: &'a [u8],
    src: &'a str,
    i: usize,
    found: &'s mut Found<'a>,
}

impl<'a> Scanner<'a, '_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    fn lit(&mut self, word: &[u8]) -> Option<()> {
        self.b[self.i..]
            .starts_with(word)
            .then(|| self.i += word.len())
    }

    /// One value; `node` is the registered path ending here, if any: its id gets the value, its
    /// children are looked for inside.
    fn value(&mut self, node: Option<&PathNode>, depth: usize) -> Option<()> {
        if depth > MAX_JSON_DEPTH {
            return None;
        }
        let keep = node.and_then(|n| n.id);
        let v = match *self.b.get(self.i)? {
            b'{' => {
                self.object(node, depth)?;
                JsonValue::Composite
            }
            b'[' => {
                self.array(node, depth)?;
                JsonValue::Composite
            }
            b'"' => JsonValue::Str(self.string(keep.is_some())?),
            b't' => {
                self.lit(b"true")?;
                JsonValue::Bool(true)
            }
            b'f' => {
                self.lit(b"false")?;
                JsonValue::Bool(false)
            }
            b'n' => {
                self.lit(b"null")?;
                JsonValue::Null
            }
            _ => JsonValue::Num(self.number()?),
        };
        if let Some(id) = keep {
            self.found.push((id, v));
        }
        Some(())
    }

    fn object(&mut self, node: Option<&PathNode>, depth: usize) -> Option<()> {
        self.i += 1;
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        let wanted = node.filter(|n| !n.keys.is_empty());
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return None;
            }
            let key = self.string(wanted.is_some())?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            let child = wanted.and_then(|n| n.keys.get(&*key));
            self.value(child, depth + 1)?;
            self.ws();
            match *self.b.get(self.i)? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, node: Option<&PathNode>, depth: usize) -> Option<()> {
        self.i += 1;
        self.ws();
        if self.eat(b']').is_some() {
            return Some(());
        }
        let wanted = node.filter(|n| !n.indexes.is_empty());
        let mut index = 0u32;
        loop {
            self.ws();
            let child = wanted.and_then(|n| n.indexes.get(&index));
            self.value(child, depth + 1)?;
            index = index.saturating_add(1);
            self.ws();
            match *self.b.get(self.i)? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string at `self.i` (which is `"`); decoded only when `decode` (borrowed when it has no
    /// escapes), otherwise only validated.
    fn string(&mut self, decode: bool) -> Option<Cow<'a, str>> {
        let start = self.i + 1;
        let mut j = start;
        let mut escaped = false;
        loop {
            match *self.b.get(j)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    match *self.b.get(j + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => j += 2,
                        b'u' => {
                            // A surrogate must come as a high-low pair (as serde_json says).
                            match hex4(self.b, j + 2)? {
                                0xD800..=0xDBFF => {
                                    if self.b.get(j + 6..j + 8)? != b"\\u"
                                        || !(0xDC00..=0xDFFF).contains(&hex4(self.b, j + 8)?)
                                    {
                                        return None;
                                    }
                                    j += 12;
                                }
                                0xDC00..=0xDFFF => return None,
                                _ => j += 6,
                            }
                        }
                        _ => return None,
                    }
                }
                c if c < 0x20 => return None,
                _ => j += 1,
            }
        }
        self.i = j + 1;
        let raw = &self.src[start..j];
        if !decode {
            return Some(Cow::Borrowed(""));
        }
        if !escaped {
            return Some(Cow::Borrowed(raw));
        }
        unescape(raw).map(Cow::Owned)
    }

    fn number(&mut self) -> Option<f64> {
        let start = self.i;
        let b = self.b;
        let mut j = self.i;
        if b.get(j) == Some(&b'-') {
            j += 1;
        }
        let digits = |j: &mut usize| {
            let s = *j;
            while b.get(*j).is_some_and(u8::is_ascii_digit) {
                *j += 1;
            }
            *j > s
        };
        // JSON: no leading zeros ("0" alone is fine), a fraction and an exponent are optional.
        if b.get(j) == Some(&b'0') {
            j += 1;
        } else if !digits(&mut j) {
            return None;
        }
        if b.get(j) == Some(&b'.') {
            j += 1;
            if !digits(&mut j) {
                return None;
            }
        }
        if matches!(b.get(j), Some(b'e' | b'E')) {
            j += 1;
            if matches!(b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if !digits(&mut j) {
                return None;
            }
        }
        self.i = j;
        // Out of f64's range (1e999) is not a number serde_json accepts either.
        self.src[start..j]
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite())
    }
}

/// The four hex digits at `at`.
fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let hex = std::str::from_utf8(b.get(at..at + 4)?).ok()?;
    if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// Decodes the escapes of a validated JSON string body (surrogate pairs included).
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let c = match chars.next()? {
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let hex = |chars: &mut std::str::Chars| {
                    let s: String = chars.by_ref().take(4).collect();
                    u32::from_str_radix(&s, 16).ok()
                };
                let hi = hex(&mut chars)?;
                if (0xD800..0xDC00).contains(&hi) {
                    // A high surrogate must be followed by `\u` and a low one.
                    if chars.next()? != '\\' || chars.next()? != 'u' {
                        return None;
                    }
                    let lo = hex(&mut chars)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return None;
                    }
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                } else {
                    char::from_u32(hi)?
                }
            }
            other => other,
        };
        out.push(c);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Segment {
        Segment::Key(s.into())
    }

    #[test]
    fn extracts_only_registered_paths() {
        let schema = Schema::default();
        let temp = schema.register(&[k("temp")]);
        let b1 = schema.register(&[k("a"), k("b"), Segment::Index(1)]);
        let obj = schema.register(&[k("a")]);
        let esc = schema.register(&[k("e")]);
        let missing = schema.register(&[k("missing")]);
        let found = schema
            .extract(r#" {"temp": -3.5e1, "a": {"b": ["w", "x"]}, "big": [1, {"temp": 9}], "e": "\u00e9\n\ud83d\ude00", "temp": -35} "#)
            .unwrap();
        assert_eq!(lookup(&found, temp), Some(&JsonValue::Num(-35.0)));
        assert_eq!(lookup(&found, b1), Some(&JsonValue::Str("x".into())));
        assert_eq!(lookup(&found, obj), Some(&JsonValue::Composite));
        assert_eq!(lookup(&found, esc), Some(&JsonValue::Str("é\n😀".into())));
        assert_eq!(lookup(&found, missing), None);
        assert_eq!(found.len(), 4, "only what the payload has: {found:?}");
        let last = schema.extract(r#"{"temp": 1, "temp": 2}"#).unwrap();
        assert_eq!(
            lookup(&last, temp),
            Some(&JsonValue::Num(2.0)),
            "last value wins"
        );
    }

    #[test]
    fn invalid_or_too_deep_is_not_json() {
        let schema = Schema::default();
        schema.register(&[k("a")]);
        for bad in [
            "",
            "{",
            "{\"a\":}",
            "{\"a\":1,}",
            "[1 2]",
            "01",
            "1.",
            "-",
            "\"\\x\"",
            "tru",
            "{\"a\":1} x",
            "\"a\u{1}\"",
            "{a:1}",
            "[1,]",
            "\"\\ud800\"x",
        ] {
            assert!(schema.extract(bad).is_none(), "{bad:?} is not JSON");
        }
        let deep = "[".repeat(MAX_JSON_DEPTH + 2) + &"]".repeat(MAX_JSON_DEPTH + 2);
        assert!(schema.extract(&deep).is_none());
        let ok_deep = "[".repeat(MAX_JSON_DEPTH) + &"]".repeat(MAX_JSON_DEPTH);
        assert!(schema.extract(&ok_deep).is_some());
        for good in [
            "1",
            "\"s\"",
            "null",
            "[]",
            "{}",
            " {\"a\" : [ ] } ",
            "0.5e-3",
        ] {
            assert!(schema.extract(good).is_some(), "{good:?} is JSON");
        }
    }

    #[test]
    fn paths_are_refcounted_and_ids_reused() {
        let schema = Schema::default();
        let v0 = schema.version();
        let a = schema.register(&[k("a"), k("b")]);
        let v1 = schema.version();
        assert_ne!(v1, v0, "a new path changes the version");
        assert_eq!(schema.register(&[k("a"), k("b")]), a);
        assert_eq!(schema.version(), v1, "one more user of a path does not");
        let c = schema.register(&[k("c")]);
        assert_eq!(schema.len(), 2);
        schema.release(&[k("a"), k("b")]);
        assert_eq!(schema.len(), 2);
        let v2 = schema.version();
        schema.release(&[k("a"), k("b")]);
        assert_eq!(schema.len(), 1);
        assert_ne!(schema.version(), v2, "a path gone changes it");
        assert!(!schema.0.borrow().root.keys.contains_key("a"), "pruned");
        let d = schema.register(&[Segment::Index(3)]);
        assert_eq!(d, a, "freed id reused");
        assert_ne!(d, c);
    }
}
