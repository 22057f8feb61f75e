//! Content- and type-based filters: a subscription may carry an expression over the message
//! (its JSON payload's fields, its topic levels, QoS, retain flag, size, MQTT 5 Content Type,
//! Payload Format Indicator and User Properties, and the payload's sniffed kind), and receives
//! only the messages for which it holds.
//!
//! - `parse`: the language (grammar in its docs) and its limits: COREMQ_FILTER_MAX_LENGTH,
//!   COREMQ_FILTER_MAX_DEPTH, COREMQ_FILTER_MAX_COST.
//! - `Filter::compile`: once, at SUBSCRIBE, on the subscriber's home shard; JSON field paths are
//!   registered in that shard's `Schema`.
//! - `Filter::matches`: on the delivering shard, after the trie match, against a `Subject` built
//!   once per message; the payload is scanned at most once per message per shard, keeping only
//!   the values of registered paths (`json.rs`).
//! - How clients ask: the MQTT 5 User Property `filter` on SUBSCRIBE / UNSUBSCRIBE, or (any
//!   version) the topic-filter prefix `$filter/<expression>/<topic filter>`, where the expression
//!   ends at its first `/` outside a "…" string and has `%`, `+`, `#` (and any other `/`)
//!   percent-encoded. Either way the session keys the subscription by
//!   `subscription_key`, the prefix form with the expression in its canonical encoding, so the same
//!   topic filter with another expression is another subscription.
//!
//! Pure like `protocol/`: no I/O, no clock, no shard types; shard-local (`Rc`).

mod eval;
pub mod fuzz_check;
mod json;
mod parse;

use std::fmt;

pub use eval::Subject;
pub use json::{Found, JsonValue, Schema, MAX_JSON_DEPTH};

use parse::{Node, Operand};

/// The topic-filter prefix that carries an expression.
pub const FILTER_PREFIX: &str = "$filter/";

/// The MQTT 5 User Property of SUBSCRIBE / UNSUBSCRIBE that carries an expression.
pub const FILTER_PROPERTY: &str = "filter";

/// One step of a JSON field path: `.name` / `["name"]`, or `[index]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(Box<str>),
    Index(u32),
}

/// What an expression may cost (flags COREMQ_FILTER_MAX_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of expression text.
    pub max_length: usize,
    /// Nesting of parentheses and `!`, and JSON path length.
    pub max_depth: usize,
    /// Conditions, operands, path steps and list items, added up: evaluating an expression is
    /// linear in this (plus the text that `contains`/`matches` scan).
    pub max_cost: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_length: 1024,
            max_depth: 16,
            max_cost: 128,
        }
    }
}

/// What is wrong with an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Empty,
    UnexpectedChar,
    BadNumber,
    BadEscape,
    UnterminatedString,
    /// Percent-encoding in a `$filter/` prefix that is not `%XX` or not UTF-8.
    BadPercent,
    Expected(&'static str),
    TooLong,
    TooDeep,
    TooCostly,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Empty => f.write_str("empty expression"),
            Problem::UnexpectedChar => f.write_str("unexpected character"),
            Problem::BadNumber => f.write_str("bad number"),
            Problem::BadEscape => f.write_str("bad escape in string"),
            Problem::UnterminatedString => f.write_str("unterminated string"),
            Problem::BadPercent => f.write_str("bad percent-encoding"),
            Problem::Expected(what) => write!(f, "expected {what}"),
            Problem::TooLong => f.write_str("longer than COREMQ_FILTER_MAX_LENGTH"),
            Problem::TooDeep => f.write_str("nested deeper than COREMQ_FILTER_MAX_DEPTH"),
            Problem::TooCostly => f.write_str("costs more than COREMQ_FILTER_MAX_COST"),
        }
    }
}

/// A refused expression: where (byte offset into the expression) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub at: usize,
    pub problem: Problem,
}

impl FilterError {
    /// Whether it is well-formed but beyond a limit (SUBACK 0x83 rather than 0x8F).
    pub fn is_too_complex(&self) -> bool {
        matches!(
            self.problem,
            Problem::TooLong | Problem::TooDeep | Problem::TooCostly
        )
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "filter expression: {} at position {}",
            self.problem, self.at
        )
    }
}

impl std::error::Error for FilterError {}

/// A compiled expression. Holds its JSON paths in the shard's `Schema` until dropped.
pub struct Filter {
    source: Box<str>,
    root: Node,
    paths: Vec<Vec<Segment>>,
    schema: Schema,
}

impl Filter {
    /// Parses `source` within `limits`, registering its JSON paths in `schema`.
    pub fn compile(source: &str, limits: &Limits, schema: &Schema) -> Result<Self, FilterError> {
        let mut root = parse::parse(source, limits)?;
        let mut paths = Vec::new();
        resolve(&mut root, schema, &mut paths);
        Ok(Self {
            source: source.into(),
            root,
            paths,
            schema: schema.clone(),
        })
    }

    /// The expression as given (decoded from the prefix form).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the message `subject` passes.
    pub fn matches(&self, subject: &Subject<'_>) -> bool {
        eval::eval(&self.root, subject)
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        for p in &self.paths {
            self.schema.release(p);
        }
    }
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Filter({:?})", self.source)
    }
}

/// Replaces every JSON path by its id in `schema`, collecting the paths registered.
fn resolve(node: &mut Node, schema: &Schema, paths: &mut Vec<Vec<Segment>>) {
    let mut operand = |op: &mut Operand| {
        if let Operand::Json(path) = op {
            let path = std::mem::take(path);
            *op = Operand::Field(schema.register(&path));
            paths.push(path);
        }
    };
    match node {
        Node::Or(items) | Node::And(items) => {
            for n in items {
                resolve(n, schema, paths);
            }
        }
        Node::Not(inner) => resolve(inner, schema, paths),
        Node::Cmp(a, _, b) => {
            operand(a);
            operand(b);
        }
        Node::In(a, _)
        | Node::Contains(a, _)
        | Node::Matches(a, _)
        | Node::Exists(a)
        | Node::Truthy(a) => operand(a),
    }
}

/// Splits a `$filter/<encoded expression>/<rest>` topic filter into the decoded expression and
/// the rest (a topic filter, possibly `$share/…`). `None` when `full` has no such prefix.
pub fn split_prefix(full: &str) -> Option<Result<(String, &str), FilterError>> {
    let rest = full.strip_prefix(FILTER_PREFIX)?;
    let Some(slash) = expression_end(rest) else {
        return Some(Err(FilterError {
            at: rest.len(),
            problem: Problem::Expected("'/' and a topic filter after the expression"),
        }));
    };
    let (encoded, tail) = (&rest[..slash], &rest[slash + 1..]);
    if tail.is_empty() {
        return Some(Err(FilterError {
            at: slash,
            problem: Problem::Expected("a topic filter after the expression"),
        }));
    }
    Some(percent_decode(encoded).map(|expr| (expr, tail)))
}

/// Where the expression at the start of `s` ends: the first `/` outside a double-quoted string
/// (so `content_type matches "application/*"` needs no encoding; `/` elsewhere does).
fn expression_end(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'/' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// The key a session stores a filtered subscription under: `$filter/`, the expression with `%`,
/// `/`, `+`, `#`, `"` and control characters percent-encoded, `/`, the topic filter.
pub fn subscription_key(expression: &str, topic_filter: &str) -> String {
    let mut key =
        String::with_capacity(FILTER_PREFIX.len() + expression.len() + topic_filter.len() + 1);
    key.push_str(FILTER_PREFIX);
    for c in expression.chars() {
        // `"` too: the key's expression then has no quotes, so it ends at its first `/`.
        if matches!(c, '%' | '/' | '+' | '#' | '"') || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                key.push_str(&format!("%{b:02X}"));
            }
        } else {
            key.push(c);
        }
    }
    key.push('/');
    key.push_str(topic_filter);
    key
}

fn percent_decode(s: &str) -> Result<String, FilterError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(v) = hex else {
                return Err(FilterError {
                    at: i,
                    problem: Problem::BadPercent,
                });
            };
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|e| FilterError {
        at: e.utf8_error().valid_up_to(),
        problem: Problem::BadPercent,
    })
}

#[cfg(test)]
mod tests;
