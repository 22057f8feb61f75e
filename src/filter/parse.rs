//! The expression language: a lexer and a recursive-descent parser from text to `Node`, checking
//! the limits (length, nesting depth, cost) as it goes, so a hostile expression is refused before
//! it costs more than its own length.
//!
//! Grammar (precedence from loosest to tightest: `||`, `&&`, `!`):
//! ```text
//! expr       := and ( "||" and )*
//! and        := unary ( "&&" unary )*
//! unary      := "!" unary | "(" expr ")" | "exists" "(" operand ")" | condition
//! condition  := operand [ cmp operand | "in" "[" literal ( "," literal )* "]"
//!                       | "contains" string | "matches" string ]
//! cmp        := "==" | "!=" | "<" | "<=" | ">" | ">="
//! operand    := literal | "topic" [ "[" int "]" ] | "qos" | "retain" | "size" | "payload"
//!             | "content_type" | "format" | "kind" | "user" "[" string "]" | path
//! path       := ( ident | "$" ) ( "." ident | "[" int "]" | "[" string "]" )*
//! literal    := number | string | "true" | "false" | "null"
//! ```
//! Worked example: `temp > 30 && !(site == "north")` →
//! `And[Cmp(Json(temp), Gt, 30), Not(Cmp(Json(site), Eq, "north"))]`.

use super::{FilterError, Limits, Problem, Segment};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A constant in the expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Num(f64),
    Str(Box<str>),
}

/// Something a condition reads: a constant, a part of the message, or a JSON field.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Lit(Literal),
    /// The whole topic name.
    Topic,
    /// One topic level, counted from 0.
    TopicLevel(u32),
    Qos,
    Retain,
    /// Payload size in bytes.
    Size,
    /// The payload as text (or bytes, for `contains`).
    Payload,
    /// MQTT 5 Content Type.
    ContentType,
    /// MQTT 5 Payload Format Indicator: 1 for UTF-8 text, 0 otherwise.
    Format,
    /// The sniffed payload kind: "json", "text" or "binary".
    Kind,
    /// The first MQTT 5 User Property with this name.
    User(Box<str>),
    /// A field of a JSON payload, as parsed; `Filter::compile` turns it into a `Field`.
    Json(Vec<Segment>),
    /// A JSON field by its id in the shard's `Schema`.
    Field(u32),
}

/// A `matches` pattern, compiled: `*` matches any run of characters, everything else itself.
/// Matching is one left-to-right pass (each literal piece found with `memmem` after the previous
/// one), so its time is linear in the text, whatever the pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Glob {
    /// The literal pieces between the `*`s (first and last may be empty).
    pieces: Vec<Box<[u8]>>,
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Self {
            pieces: pattern.split('*').map(|p| p.as_bytes().into()).collect(),
        }
    }

    pub fn matches(&self, text: &[u8]) -> bool {
        let Some((first, rest)) = self.pieces.split_first() else {
            return text.is_empty();
        };
        let Some((last, middle)) = rest.split_last() else {
            return text == &**first; // no `*` at all
        };
        if text.len() < first.len() + last.len()
            || !text.starts_with(first)
            || !text.ends_with(last)
        {
            return false;
        }
        // The middle pieces, leftmost first, between the prefix and the suffix.
        let mut hay = &text[first.len()..text.len() - last.len()];
        for piece in middle {
            match memchr::memmem::find(hay, piece) {
                Some(at) => hay = &hay[at + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

/// The parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    Cmp(Operand, Cmp, Operand),
    In(Operand, Vec<Literal>),
    Contains(Operand, Box<str>),
    Matches(Operand, Glob),
    Exists(Operand),
    /// A bare operand: true when it is the boolean `true`.
    Truthy(Operand),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(Box<str>),
    Ident(Box<str>),
    Dollar,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Not,
    And,
    Or,
    Cmp(Cmp),
}

/// Splits `src` into tokens with their byte offsets.
fn lex(src: &str) -> Result<Vec<(usize, Tok)>, FilterError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |at: usize, problem: Problem| Err(FilterError { at, problem });
    while i < b.len() {
        let c = b[i];
        let start = i;
        let two = |next: u8| b.get(i + 1) == Some(&next);
        let tok = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b'[' => Tok::LBracket,
            b']' => Tok::RBracket,
            b',' => Tok::Comma,
            b'.' => Tok::Dot,
            b'$' => Tok::Dollar,
            b'&' if two(b'&') => {
                i += 1;
                Tok::And
            }
            b'|' if two(b'|') => {
                i += 1;
                Tok::Or
            }
            b'=' if two(b'=') => {
                i += 1;
                Tok::Cmp(Cmp::Eq)
            }
            b'!' if two(b'=') => {
                i += 1;
                Tok::Cmp(Cmp::Ne)
            }
            b'!' => Tok::Not,
            b'<' if two(b'=') => {
                i += 1;
                Tok::Cmp(Cmp::Le)
            }
            b'<' => Tok::Cmp(Cmp::Lt),
            b'>' if two(b'=') => {
                i += 1;
                Tok::Cmp(Cmp::Ge)
            }
            b'>' => Tok::Cmp(Cmp::Gt),
            b'"' => {
                let (s, end) = string(src, i)?;
                i = end;
                out.push((start, Tok::Str(s)));
                continue;
            }
            b'-' | b'0'..=b'9' => {
                let mut j = i + 1;
                while j < b.len() && matches!(b[j], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    // A sign inside a number only right after an exponent.
                    if matches!(b[j], b'+' | b'-') && !matches!(b[j - 1], b'e' | b'E') {
                        break;
                    }
                    j += 1;
                }
                let text = &src[i..j];
                match text.parse::<f64>() {
                    Ok(n) if n.is_finite() => {
                        i = j;
                        out.push((start, Tok::Num(n)));
                        continue;
                    }
                    _ => return err(start, Problem::BadNumber),
                }
            }
            c if c == b'_' || c.is_ascii_alphabetic() => {
                let mut j = i + 1;
                while j < b.len() && (b[j] == b'_' || b[j].is_ascii_alphanumeric()) {
                    j += 1;
                }
                out.push((start, Tok::Ident(src[i..j].into())));
                i = j;
                continue;
            }
            _ => return err(start, Problem::UnexpectedChar),
        };
        i += 1;
        out.push((start, tok));
    }
    Ok(out)
}

/// A double-quoted string starting at `at`, with `\"`, `\\`, `\n`, `\t` and `\u{…}`-free JSON
/// style `\uXXXX` escapes. Returns the text and the offset after the closing quote.
fn string(src: &str, at: usize) -> Result<(Box<str>, usize), FilterError> {
    let mut s = String::new();
    let mut chars = src[at + 1..].char_indices();
    let bad = |problem| FilterError { at, problem };
    while let Some((k, c)) = chars.next() {
        match c {
            '"' => return Ok((s.into(), at + 1 + k + 1)),
            '\\' => match chars.next().map(|(_, e)| e) {
                Some('"') => s.push('"'),
                Some('\\') => s.push('\\'),
                Some('/') => s.push('/'),
                Some('n') => s.push('\n'),
                Some('t') => s.push('\t'),
                Some('r') => s.push('\r'),
                Some('u') => {
                    let mut v = 0u32;
                    for _ in 0..4 {
                        let d = chars
                            .next()
                            .and_then(|(_, h)| h.to_digit(16))
                            .ok_or(bad(Problem::BadEscape))?;
                        v = v * 16 + d;
                    }
                    s.push(char::from_u32(v).ok_or(bad(Problem::BadEscape))?);
                }
                _ => return Err(bad(Problem::BadEscape)),
            },
            c => s.push(c),
        }
    }
    Err(bad(Problem::UnterminatedString))
}

struct Parser<'l> {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    /// Offset of the end of the text, for errors at the end.
    end: usize,
    depth: usize,
    cost: usize,
    limits: &'l Limits,
}

/// Parses `src` within `limits`.
pub fn parse(src: &str, limits: &Limits) -> Result<Node, FilterError> {
    if src.len() > limits.max_length {
        return Err(FilterError {
            at: limits.max_length,
            problem: Problem::TooLong,
        });
    }
    let toks = lex(src)?;
    if toks.is_empty() {
        return Err(FilterError {
            at: 0,
            problem: Problem::Empty,
        });
    }
    let mut p = Parser {
        toks,
        pos: 0,
        end: src.len(),
        depth: 0,
        cost: 0,
        limits,
    };
    let node = p.expr()?;
    if p.pos < p.toks.len() {
        return Err(p.error(Problem::Expected("end of expression")));
    }
    Ok(node)
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(at, _)| *at)
    }

    fn error(&self, problem: Problem) -> FilterError {
        FilterError {
            at: self.at(),
            problem,
        }
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn expect(&mut self, tok: Tok, what: &'static str) -> Result<(), FilterError> {
        if self.peek() == Some(&tok) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(Problem::Expected(what)))
        }
    }

    /// Counts `n` units of evaluation cost against COREMQ_FILTER_MAX_COST.
    fn charge(&mut self, n: usize) -> Result<(), FilterError> {
        self.cost += n;
        if self.cost > self.limits.max_cost {
            return Err(self.error(Problem::TooCostly));
        }
        Ok(())
    }

    /// Parses one level deeper, opened by the token at `at` (named when it is one too many).
    fn nest<T>(
        &mut self,
        at: usize,
        f: impl FnOnce(&mut Self) -> Result<T, FilterError>,
    ) -> Result<T, FilterError> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(FilterError {
                at,
                problem: Problem::TooDeep,
            });
        }
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn expr(&mut self) -> Result<Node, FilterError> {
        self.list(Tok::Or, Self::and, Node::Or)
    }

    fn and(&mut self) -> Result<Node, FilterError> {
        self.list(Tok::And, Self::unary, Node::And)
    }

    /// `item ( sep item )*`: the item alone, or `node` of them all.
    fn list(
        &mut self,
        sep: Tok,
        item: fn(&mut Self) -> Result<Node, FilterError>,
        node: fn(Vec<Node>) -> Node,
    ) -> Result<Node, FilterError> {
        let mut items = vec![item(self)?];
        while self.peek() == Some(&sep) {
            self.pos += 1;
            items.push(item(self)?);
        }
        Ok(match items.len() {
            1 => items.swap_remove(0),
            _ => node(items),
        })
    }

    fn unary(&mut self) -> Result<Node, FilterError> {
        self.charge(1)?;
        let at = self.at();
        match self.peek() {
            Some(Tok::Not) => {
                self.pos += 1;
                self.nest(at, |p| Ok(Node::Not(Box::new(p.unary()?))))
            }
            Some(Tok::LParen) => {
                self.pos += 1;
                let inner = self.nest(at, |p| p.expr())?;
                self.expect(Tok::RParen, "')'")?;
                Ok(inner)
            }
            Some(Tok::Ident(name))
                if &**name == "exists"
                    && self.toks.get(self.pos + 1).map(|t| &t.1) == Some(&Tok::LParen) =>
            {
                self.pos += 2;
                let operand = self.operand()?;
                self.expect(Tok::RParen, "')'")?;
                Ok(Node::Exists(operand))
            }
            _ => self.condition(),
        }
    }

    fn condition(&mut self) -> Result<Node, FilterError> {
        let left = self.operand()?;
        match self.peek() {
            Some(Tok::Cmp(op)) => {
                let op = *op;
                self.pos += 1;
                let right = self.operand()?;
                Ok(Node::Cmp(left, op, right))
            }
            Some(Tok::Ident(w)) if &**w == "in" => {
                self.pos += 1;
                self.expect(Tok::LBracket, "'[' after in")?;
                let mut list = vec![self.literal()?];
                while self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                    self.charge(1)?;
                    list.push(self.literal()?);
                }
                self.expect(Tok::RBracket, "']'")?;
                Ok(Node::In(left, list))
            }
            Some(Tok::Ident(w)) if &**w == "contains" || &**w == "matches" => {
                let contains = &**w == "contains";
                self.pos += 1;
                let Some(Tok::Str(s)) = self.peek().cloned() else {
                    return Err(self.error(Problem::Expected("a string")));
                };
                self.pos += 1;
                // Both scan the value once per pattern byte at worst.
                self.charge(1 + s.len() / 16)?;
                Ok(if contains {
                    Node::Contains(left, s)
                } else {
                    Node::Matches(left, Glob::new(&s))
                })
            }
            _ => Ok(Node::Truthy(left)),
        }
    }

    fn literal(&mut self) -> Result<Literal, FilterError> {
        match self.operand()? {
            Operand::Lit(l) => Ok(l),
            _ => {
                self.pos -= 1;
                Err(self.error(Problem::Expected("a literal")))
            }
        }
    }

    fn operand(&mut self) -> Result<Operand, FilterError> {
        self.charge(1)?;
        let at = self.at();
        let Some(tok) = self.next() else {
            return Err(self.error(Problem::Expected("a value or field")));
        };
        let name = match tok {
            Tok::Num(n) => return Ok(Operand::Lit(Literal::Num(n))),
            Tok::Str(s) => return Ok(Operand::Lit(Literal::Str(s))),
            Tok::Dollar => None,
            Tok::Ident(name) => Some(name),
            _ => {
                self.pos -= 1;
                return Err(self.error(Problem::Expected("a value or field")));
            }
        };
        if let Some(name) = &name {
            let simple = match &**name {
                "true" => Some(Operand::Lit(Literal::Bool(true))),
                "false" => Some(Operand::Lit(Literal::Bool(false))),
                "null" => Some(Operand::Lit(Literal::Null)),
                "qos" => Some(Operand::Qos),
                "retain" => Some(Operand::Retain),
                "size" => Some(Operand::Size),
                "payload" => Some(Operand::Payload),
                "content_type" => Some(Operand::ContentType),
                "format" => Some(Operand::Format),
                "kind" => Some(Operand::Kind),
                _ => None,
            };
            if let Some(op) = simple {
                return Ok(op);
            }
            match &**name {
                "topic" => {
                    if self.peek() != Some(&Tok::LBracket) {
                        return Ok(Operand::Topic);
                    }
                    self.pos += 1;
                    let level = self.index()?;
                    self.expect(Tok::RBracket, "']'")?;
                    return Ok(Operand::TopicLevel(level));
                }
                "user" => {
                    self.expect(Tok::LBracket, "'[' after user")?;
                    let Some(Tok::Str(key)) = self.next() else {
                        self.pos -= 1;
                        return Err(self.error(Problem::Expected("a property name string")));
                    };
                    self.expect(Tok::RBracket, "']'")?;
                    return Ok(Operand::User(key));
                }
                "in" | "contains" | "matches" | "exists" => {
                    return Err(FilterError {
                        at,
                        problem: Problem::Expected("a value or field"),
                    })
                }
                _ => {}
            }
        }
        // A JSON path: `name`, or `$` for the root, then `.field`, `[n]`, `["field"]`.
        let mut path: Vec<Segment> = name.map(Segment::Key).into_iter().collect();
        loop {
            match self.peek() {
                Some(Tok::Dot) => {
                    self.pos += 1;
                    match self.next() {
                        Some(Tok::Ident(k)) => path.push(Segment::Key(k)),
                        _ => {
                            self.pos -= 1;
                            return Err(self.error(Problem::Expected("a field name after '.'")));
                        }
                    }
                }
                Some(Tok::LBracket) => {
                    self.pos += 1;
                    if let Some(Tok::Str(k)) = self.peek().cloned() {
                        self.pos += 1;
                        path.push(Segment::Key(k));
                    } else {
                        path.push(Segment::Index(self.index()?));
                    }
                    self.expect(Tok::RBracket, "']'")?;
                }
                _ => break,
            }
            self.charge(1)?;
            if path.len() > self.limits.max_depth {
                return Err(self.error(Problem::TooDeep));
            }
        }
        Ok(Operand::Json(path))
    }

    /// A non-negative integer index.
    fn index(&mut self) -> Result<u32, FilterError> {
        match self.peek() {
            Some(Tok::Num(n)) if n.fract() == 0.0 && *n >= 0.0 && *n <= f64::from(u32::MAX) => {
                let n = *n as u32;
                self.pos += 1;
                Ok(n)
            }
            _ => Err(self.error(Problem::Expected("an index (0, 1, …)"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> Node {
        parse(src, &Limits::default()).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    fn key(k: &str) -> Segment {
        Segment::Key(k.into())
    }

    #[test]
    fn precedence_and_grouping() {
        let n = ok(r#"a > 1 || b == "x" && !c"#);
        assert_eq!(
            n,
            Node::Or(vec![
                Node::Cmp(
                    Operand::Json(vec![key("a")]),
                    Cmp::Gt,
                    Operand::Lit(Literal::Num(1.0))
                ),
                Node::And(vec![
                    Node::Cmp(
                        Operand::Json(vec![key("b")]),
                        Cmp::Eq,
                        Operand::Lit(Literal::Str("x".into()))
                    ),
                    Node::Not(Box::new(Node::Truthy(Operand::Json(vec![key("c")])))),
                ]),
            ])
        );
        assert_eq!(ok("(a)"), Node::Truthy(Operand::Json(vec![key("a")])));
    }

    #[test]
    fn operands_and_paths() {
        assert_eq!(
            ok(r#"a.b[0]["c d"] != null"#),
            Node::Cmp(
                Operand::Json(vec![key("a"), key("b"), Segment::Index(0), key("c d")]),
                Cmp::Ne,
                Operand::Lit(Literal::Null)
            )
        );
        assert_eq!(
            ok(r#"topic[1] == "kitchen""#),
            Node::Cmp(
                Operand::TopicLevel(1),
                Cmp::Eq,
                Operand::Lit(Literal::Str("kitchen".into()))
            )
        );
        assert_eq!(
            ok(r#"user["unit"] in ["C", "F"]"#),
            Node::In(
                Operand::User("unit".into()),
                vec![Literal::Str("C".into()), Literal::Str("F".into())]
            )
        );
        assert_eq!(
            ok("$.qos >= -1.5e1"),
            Node::Cmp(
                Operand::Json(vec![key("qos")]),
                Cmp::Ge,
                Operand::Lit(Literal::Num(-15.0))
            )
        );
        assert_eq!(
            ok("exists(battery)"),
            Node::Exists(Operand::Json(vec![key("battery")]))
        );
        assert_eq!(
            ok(r#"content_type matches "application/*""#),
            Node::Matches(Operand::ContentType, Glob::new("application/*"))
        );
    }

    #[test]
    fn errors_name_the_position() {
        let cases: &[(&str, usize, Problem)] = &[
            ("", 0, Problem::Empty),
            ("a >", 3, Problem::Expected("a value or field")),
            ("a > 1 b", 6, Problem::Expected("end of expression")),
            ("(a", 2, Problem::Expected("')'")),
            ("a # 1", 2, Problem::UnexpectedChar),
            ("a == \"x", 5, Problem::UnterminatedString),
            ("a == \"\\q\"", 5, Problem::BadEscape),
            ("a in [b]", 6, Problem::Expected("a literal")),
            ("topic[-1] == 1", 6, Problem::Expected("an index (0, 1, …)")),
            ("a contains 1", 11, Problem::Expected("a string")),
            ("1e999 > a", 0, Problem::BadNumber),
            ("a & b", 2, Problem::UnexpectedChar),
        ];
        for (src, at, problem) in cases {
            let e = parse(src, &Limits::default()).unwrap_err();
            assert_eq!((e.at, &e.problem), (*at, problem), "{src:?}");
        }
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            max_length: 64,
            max_depth: 4,
            max_cost: 10,
        };
        let long = "a == 1 || ".repeat(10) + "a == 1";
        assert_eq!(parse(&long, &limits).unwrap_err().problem, Problem::TooLong);
        assert_eq!(
            parse("!!!!!a", &limits).unwrap_err().problem,
            Problem::TooDeep
        );
        assert_eq!(
            parse("((((((a))))))", &limits).unwrap_err().problem,
            Problem::TooDeep
        );
        assert_eq!(
            parse("a == 1 || a == 2 || a == 3 || a == 4", &limits)
                .unwrap_err()
                .problem,
            Problem::TooCostly
        );
        assert!(parse("a == 1 || a == 2", &limits).is_ok());
    }
}
