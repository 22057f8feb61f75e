//! Topic filters as sets of topics, for deciding what a subscription may receive without
//! enumerating topics: does one filter contain another, and what do two have in common.
//!
//! A validated filter is a *shape*: a list of levels, each a literal or "any" (`+`), plus
//! whether it ends in `#` ("open"). A closed shape of n levels matches topics of exactly n
//! levels; an open one matches topics of at least n levels (`a/#` matches `a`, [MQTT-4.7.1-2]),
//! each level matching its literal or anything. `#` alone is the open shape `+/#`, since every
//! topic has a first level. [MQTT-4.7.2-1]: "any" in the first level does not match a level
//! starting with `$`.
//!
//! Worked example: `sensors/#` ∩ `+/+/temp` = `sensors/+/temp`; `a/+` ∩ `a/b/#` = `a/b`
//! (`a/b/#` contains its parent `a/b`); `+/x` ∩ `$SYS/#` = nothing. `a/#` covers `a/+/#`
//! (every topic of it starts with `a`), but `a/+/#` does not cover `a/#`, which also matches
//! `a` itself.
//!
//! Intersections are exact (the intersection of two shapes is a shape), so the ACL's
//! "allowed in full" and "denied in full" answers built on them are never wrong; they may only
//! miss a case where several rules together cover a filter no single rule covers, and then
//! answer "partly", which filters per message and so delivers the same messages.

/// One level of a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level<'a> {
    Lit(&'a str),
    Any,
}

#[derive(Debug)]
struct Shape<'a> {
    levels: Vec<Level<'a>>,
    /// Ends in `#`: also matches any number of further levels.
    open: bool,
}

fn shape(filter: &str) -> Shape<'_> {
    let mut levels = Vec::new();
    let mut open = false;
    for l in filter.split('/') {
        match l {
            "#" => {
                open = true;
                break;
            }
            "+" => levels.push(Level::Any),
            lit => levels.push(Level::Lit(lit)),
        }
    }
    if levels.is_empty() {
        levels.push(Level::Any);
    }
    Shape { levels, open }
}

/// Whether every topic `inner` matches is also matched by `outer` (both validated filters
/// without `$share/` prefix).
pub(super) fn covers(outer: &str, inner: &str) -> bool {
    let (o, i) = (shape(outer), shape(inner));
    let lengths_fit = match (o.open, i.open) {
        (false, false) => o.levels.len() == i.levels.len(),
        (true, _) => i.levels.len() >= o.levels.len(),
        // An open filter matches topics of every length beyond its levels; a closed one not.
        (false, true) => false,
    };
    lengths_fit
        && o.levels
            .iter()
            .zip(&i.levels)
            .enumerate()
            .all(|(n, (ol, il))| match (*ol, *il) {
                (Level::Any, Level::Any) => true,
                (Level::Any, Level::Lit(s)) => !(n == 0 && s.starts_with('$')),
                (Level::Lit(a), Level::Lit(b)) => a == b,
                (Level::Lit(_), Level::Any) => false,
            })
}

/// The filter matching exactly the topics both `a` and `b` match, or `None` when they share
/// none.
pub(super) fn intersect(a: &str, b: &str) -> Option<String> {
    let (a, b) = (shape(a), shape(b));
    let (la, lb) = (a.levels.len(), b.levels.len());
    let len = match (a.open, b.open) {
        (false, false) if la == lb => la,
        (true, false) if lb >= la => lb,
        (false, true) if la >= lb => la,
        (true, true) => la.max(lb),
        _ => return None,
    };
    let mut out = String::new();
    for n in 0..len {
        // Past an open shape's levels, it matches anything.
        let x = a.levels.get(n).copied().unwrap_or(Level::Any);
        let y = b.levels.get(n).copied().unwrap_or(Level::Any);
        let level = match (x, y) {
            (Level::Any, Level::Any) => "+",
            (Level::Lit(s), Level::Any) | (Level::Any, Level::Lit(s)) => {
                if n == 0 && s.starts_with('$') {
                    // [MQTT-4.7.2-1] the wildcard side does not match `$` topics.
                    return None;
                }
                s
            }
            (Level::Lit(s), Level::Lit(t)) if s == t => s,
            _ => return None,
        };
        if n > 0 {
            out.push('/');
        }
        out.push_str(level);
    }
    if a.open && b.open {
        out.push_str("/#");
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::matches;

    /// Topics to test the algebra against `topic::matches`, the reference.
    const TOPICS: &[&str] = &[
        "a",
        "b",
        "a/b",
        "a/c",
        "b/b",
        "a/b/c",
        "a/b/d",
        "a/c/c",
        "x/y/z/w",
        "$SYS",
        "$SYS/a",
        "$SYS/a/b",
        "/",
        "/a",
        "a/",
        "sensors/k/temp",
        "sensors/k/hum",
    ];

    const FILTERS: &[&str] = &[
        "#",
        "+",
        "+/#",
        "a",
        "a/#",
        "a/+",
        "a/b",
        "a/+/#",
        "a/b/#",
        "+/b",
        "+/+",
        "+/+/+",
        "a/+/c",
        "$SYS/#",
        "$SYS/+",
        "+/a",
        "/#",
        "+/",
        "sensors/#",
        "+/+/temp",
        "a/b/c",
    ];

    fn topics_of(f: &str) -> Vec<&'static str> {
        TOPICS.iter().copied().filter(|t| matches(f, t)).collect()
    }

    #[test]
    fn covers_agrees_with_matching_on_sample_topics() {
        for outer in FILTERS {
            for inner in FILTERS {
                if covers(outer, inner) {
                    for t in topics_of(inner) {
                        assert!(matches(outer, t), "{outer} covers {inner} but not {t}");
                    }
                }
            }
        }
    }

    #[test]
    fn intersection_matches_exactly_the_common_topics() {
        for a in FILTERS {
            for b in FILTERS {
                let both: Vec<_> = TOPICS
                    .iter()
                    .filter(|t| matches(a, t) && matches(b, t))
                    .collect();
                match intersect(a, b) {
                    Some(x) => {
                        for t in TOPICS {
                            assert_eq!(matches(&x, t), both.contains(&t), "{a} ∩ {b} = {x}, {t}");
                        }
                    }
                    None => assert!(both.is_empty(), "{a} ∩ {b} empty but {both:?}"),
                }
            }
        }
    }

    #[test]
    fn table() {
        // (outer, inner, covers?)
        for (o, i, want) in [
            ("#", "a/b", true),
            ("#", "+/#", true),
            ("+/#", "#", true),
            ("#", "$SYS/#", false),
            ("$SYS/#", "$SYS/+", true),
            ("a/#", "a", true),
            ("a/#", "a/+/#", true),
            ("a/+/#", "a/#", false),
            ("a/+", "a/#", false),
            ("a/+", "a/b", true),
            ("a/b", "a/+", false),
            ("+/+", "a/b", true),
            ("+", "a/b", false),
        ] {
            assert_eq!(covers(o, i), want, "{o} covers {i}");
        }
        // (a, b, a ∩ b)
        for (a, b, want) in [
            ("sensors/#", "+/+/temp", Some("sensors/+/temp")),
            ("a/+", "a/b/#", Some("a/b")),
            ("a/#", "+/b/#", Some("a/b/#")),
            ("#", "#", Some("+/#")),
            ("#", "a", Some("a")),
            ("+/x", "$SYS/#", None),
            ("#", "$SYS/x", None),
            ("$SYS/#", "$SYS/x", Some("$SYS/x")),
            ("a/b", "a/c", None),
            ("a/+", "a/+/+", None),
            ("a/+/+/#", "a/#", Some("a/+/+/#")),
        ] {
            assert_eq!(intersect(a, b).as_deref(), want, "{a} ∩ {b}");
        }
    }
}
