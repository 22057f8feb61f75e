//! The filter language's invariants on arbitrary bytes: the one check shared by the `filter` fuzz
//! target (`fuzz/fuzz_targets/filter.rs`) and the corpus replay test (`tests/fuzz_corpus.rs`).
//! Not part of the broker (hidden from the docs).
//!
//! It never panics itself: a broken invariant comes back as `Err(description)`. A panic (or a
//! hang) inside the parser, the evaluator or the JSON scan is what the fuzzer looks for.
//!
//! The input's first line is an expression; the rest is a payload. Then:
//! - compiling never panics; a refused expression names a position inside it (or at its end);
//!   an accepted one is within the limits' length;
//! - `!(expr)` compiles too (when within the limits) and always evaluates to the opposite;
//! - evaluating twice on one `Subject` (and `!(…)` on it) scans the payload at most once, and a
//!   fresh `Subject` agrees;
//! - the expression in the `$filter/` prefix form decodes back to itself, and the first line
//!   read as a `$filter/` topic filter splits into what its canonical key splits into;
//! - dropping the filters releases every JSON path they registered.

use super::{split_prefix, subscription_key, Filter, Limits, Schema, Subject};

/// What one `check` saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub compiled: usize,
    pub refused: usize,
    pub passed: usize,
}

/// Runs every invariant of the module docs on `data`.
pub fn check(data: &[u8]) -> Result<Summary, String> {
    let mut summary = Summary::default();
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (head, payload) = (&data[..split], data.get(split + 1..).unwrap_or(&[]));
    let expr = String::from_utf8_lossy(head);
    // The first line read as a `$filter/` topic filter: whatever it splits into comes back
    // unchanged from its canonical key.
    let raw = format!("$filter/{expr}");
    if let Some(Ok((e, rest))) = split_prefix(&raw) {
        let key = subscription_key(&e, rest);
        match split_prefix(&key) {
            Some(Ok((e2, rest2))) if e2 == e && rest2 == rest => {}
            other => return Err(format!("{raw:?} -> {key:?} reads back as {other:?}")),
        }
    }
    let limits = Limits::default();
    let schema = Schema::default();
    let filter = match Filter::compile(&expr, &limits, &schema) {
        Ok(f) => f,
        Err(e) => {
            if e.at > expr.len() {
                return Err(format!(
                    "{expr:?}: error position {} beyond {}",
                    e.at,
                    expr.len()
                ));
            }
            summary.refused += 1;
            return Ok(summary);
        }
    };
    summary.compiled += 1;
    if expr.len() > limits.max_length {
        return Err(format!("{expr:?}: accepted beyond max_length"));
    }
    let wider = Limits {
        max_length: limits.max_length + 3,
        max_depth: limits.max_depth + 2,
        max_cost: limits.max_cost + 2,
    };
    let negated = Filter::compile(&format!("!({expr})"), &wider, &schema)
        .map_err(|e| format!("{expr:?} compiles but !(…) does not: {e}"))?;
    let topic = "a/b/c";
    let scans = schema.scans();
    let subject = Subject::new(topic, payload, &schema);
    let first = filter.matches(&subject);
    if filter.matches(&subject) != first {
        return Err(format!("{expr:?}: two evaluations differ"));
    }
    if negated.matches(&subject) == first {
        return Err(format!("{expr:?}: !(…) gives the same answer ({first})"));
    }
    if schema.scans() - scans > 1 {
        return Err(format!(
            "{expr:?}: payload scanned {} times for one subject",
            schema.scans() - scans
        ));
    }
    if filter.matches(&Subject::new(topic, payload, &schema)) != first {
        return Err(format!("{expr:?}: a fresh subject disagrees"));
    }
    summary.passed += usize::from(first);
    let key = subscription_key(&expr, "x/#");
    match split_prefix(&key) {
        Some(Ok((back, "x/#"))) if back == expr => {}
        other => {
            return Err(format!(
                "{expr:?}: prefix form {key:?} reads back as {other:?}"
            ))
        }
    }
    drop((filter, negated));
    if !schema.is_empty() {
        return Err(format!(
            "{expr:?}: {} paths left after the drop",
            schema.len()
        ));
    }
    Ok(summary)
}
