//! The dynamic-group query language: a small boolean language over device attributes, parsed by
//! hand (no I/O, no allocation beyond the tree) so it can be fuzzed and its errors are precise.
//!
//! ```text
//! query   := or
//! or      := and ( "or" and )*
//! and     := unary ( "and" unary )*
//! unary   := "not" unary | "(" or ")" | compare
//! compare := ATTR ( "==" | "!=" | "starts_with" | "contains" ) STRING
//!          | ATTR "in" "[" STRING ( "," STRING )* "]"
//! STRING  := '"' ( any char but '"' and '\' | '\' ( '"' | '\' | 'n' | 'r' | 't' | "u{" HEX{1,6} "}" ) )* '"'
//! ```
//!
//! `not` binds tighter than `and`, which binds tighter than `or`. Comparisons ignore case. An
//! attribute the device does not have (no group tag, no inventory yet) is *absent*: `==`, `in`,
//! `starts_with` and `contains` are false on it and `!=` is true. Errors carry the 1-based
//! column (in characters) and what was expected there.

use std::borrow::Cow;
use std::fmt;

use crate::store::{Device, DeviceState};

/// Longest query accepted (bytes).
pub const MAX_QUERY_LEN: usize = 4096;
/// Deepest nesting of parentheses and `not`.
pub const MAX_DEPTH: usize = 32;

/// A device attribute a query can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    /// `windows-pc` or `hololens` (HoloLens: OSEdition 135/136 or a DeviceType containing
    /// `Holographic`).
    DeviceType,
    /// `./DevDetail/SwV` when reported, else the enrollment's OSVersion.
    OsVersion,
    /// OSEdition (Windows product type number).
    OsEdition,
    /// `autopilot`, `bulk`, `device` or `user`.
    Enrollment,
    /// The Autopilot group tag.
    GroupTag,
    /// The user: the assigned user of a bulk device, else the enrolling UPN.
    User,
    /// `./DevInfo/Mod`.
    Model,
    /// `./DevInfo/Man`.
    Manufacturer,
    /// The device name (`./DevDetail/Ext/Microsoft/DeviceName` when reported, else the
    /// enrollment's DeviceName).
    Name,
    /// `enrolled` or `unenrolled`.
    State,
    /// The DeviceID.
    DeviceId,
}

impl Attr {
    /// Every attribute.
    pub const ALL: [Attr; 11] = [
        Attr::DeviceType,
        Attr::OsVersion,
        Attr::OsEdition,
        Attr::Enrollment,
        Attr::GroupTag,
        Attr::User,
        Attr::Model,
        Attr::Manufacturer,
        Attr::Name,
        Attr::State,
        Attr::DeviceId,
    ];

    /// The name used in queries.
    pub fn name(self) -> &'static str {
        match self {
            Attr::DeviceType => "device_type",
            Attr::OsVersion => "os_version",
            Attr::OsEdition => "os_edition",
            Attr::Enrollment => "enrollment",
            Attr::GroupTag => "group_tag",
            Attr::User => "user",
            Attr::Model => "model",
            Attr::Manufacturer => "manufacturer",
            Attr::Name => "name",
            Attr::State => "state",
            Attr::DeviceId => "device_id",
        }
    }

    fn parse(s: &str) -> Option<Attr> {
        Attr::ALL.into_iter().find(|a| a.name() == s)
    }

    /// The only values an enumerated attribute takes (`None`: free text).
    pub fn values(self) -> Option<&'static [&'static str]> {
        match self {
            Attr::DeviceType => Some(&["windows-pc", "hololens"]),
            Attr::Enrollment => Some(&["user", "device", "bulk", "autopilot"]),
            Attr::State => Some(&["enrolled", "unenrolled"]),
            _ => None,
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `starts_with`
    StartsWith,
    /// `contains`
    Contains,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `attr op "value"` (value lower-cased).
    Compare(Attr, Op, String),
    /// `attr in [...]` (values lower-cased).
    In(Attr, Vec<String>),
    /// `not e`
    Not(Box<Expr>),
    /// `a and b and ...`
    And(Vec<Expr>),
    /// `a or b or ...`
    Or(Vec<Expr>),
}

/// A query that does not parse: where and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query error at column {column}: {message}")]
pub struct QueryError {
    /// 1-based column, in characters.
    pub column: usize,
    /// What was wrong / expected.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    EqEq,
    NotEq,
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Str(s) => write!(f, "string {s:?}"),
            Tok::LParen => f.write_str("`(`"),
            Tok::RParen => f.write_str("`)`"),
            Tok::LBracket => f.write_str("`[`"),
            Tok::RBracket => f.write_str("`]`"),
            Tok::Comma => f.write_str("`,`"),
            Tok::EqEq => f.write_str("`==`"),
            Tok::NotEq => f.write_str("`!=`"),
            Tok::End => f.write_str("end of query"),
        }
    }
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl Lexer<'_> {
    fn err(&self, at: usize, message: impl Into<String>) -> QueryError {
        QueryError {
            column: self.src[..at.min(self.src.len())].chars().count() + 1,
            message: message.into(),
        }
    }

    /// The next token and its byte offset.
    fn next(&mut self) -> Result<(Tok, usize), QueryError> {
        let rest = &self.src[self.pos..];
        let trimmed = rest.trim_start();
        self.pos += rest.len() - trimmed.len();
        let start = self.pos;
        let Some(c) = trimmed.chars().next() else {
            return Ok((Tok::End, start));
        };
        let single = |t: Tok, me: &mut Self| {
            me.pos += 1;
            Ok((t, start))
        };
        match c {
            '(' => single(Tok::LParen, self),
            ')' => single(Tok::RParen, self),
            '[' => single(Tok::LBracket, self),
            ']' => single(Tok::RBracket, self),
            ',' => single(Tok::Comma, self),
            '=' | '!' => {
                if trimmed[1..].starts_with('=') {
                    self.pos += 2;
                    Ok((if c == '=' { Tok::EqEq } else { Tok::NotEq }, start))
                } else {
                    Err(self.err(
                        start,
                        format!("expected `{c}=`, found `{c}` alone (use `not` for negation)"),
                    ))
                }
            }
            '"' => self.string(start),
            c if c.is_ascii_alphabetic() || c == '_' => {
                let len = trimmed
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(trimmed.len());
                self.pos += len;
                Ok((Tok::Ident(trimmed[..len].to_string()), start))
            }
            other => Err(self.err(
                start,
                format!("unexpected character {other:?}; expected an attribute, an operator, a string, `(`, `)`, `[`, `]` or `,`"),
            )),
        }
    }

    fn string(&mut self, start: usize) -> Result<(Tok, usize), QueryError> {
        let mut out = String::new();
        let mut it = self.src[start + 1..].char_indices();
        while let Some((i, c)) = it.next() {
            let at = start + 1 + i;
            match c {
                '"' => {
                    self.pos = at + 1;
                    return Ok((Tok::Str(out), start));
                }
                '\\' => match it.next() {
                    Some((_, '"')) => out.push('"'),
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 'r')) => out.push('\r'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, 'u')) => {
                        if !matches!(it.next(), Some((_, '{'))) {
                            return Err(self.err(at, "expected `{` after `\\u` (write `\\u{41}`)"));
                        }
                        let mut hex = String::new();
                        loop {
                            match it.next() {
                                Some((_, '}')) => break,
                                Some((_, h)) if h.is_ascii_hexdigit() && hex.len() < 6 => {
                                    hex.push(h)
                                }
                                _ => {
                                    return Err(self.err(
                                        at,
                                        "expected 1 to 6 hex digits and `}` in a `\\u{...}` escape",
                                    ))
                                }
                            }
                        }
                        let ch = u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| {
                                self.err(at, format!("\\u{{{hex}}} is not a Unicode scalar value"))
                            })?;
                        out.push(ch);
                    }
                    Some((_, other)) => {
                        return Err(self.err(
                            at,
                            format!("unknown escape `\\{other}`; expected one of \\\" \\\\ \\n \\r \\t \\u{{...}}"),
                        ))
                    }
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(self.err(start, "unterminated string: expected a closing `\"`"))
    }
}

struct Parser<'a> {
    lex: Lexer<'a>,
    tok: Tok,
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn bump(&mut self) -> Result<Tok, QueryError> {
        let (t, at) = self.lex.next()?;
        self.at = at;
        Ok(std::mem::replace(&mut self.tok, t))
    }

    fn expected(&self, what: &str) -> QueryError {
        self.lex
            .err(self.at, format!("expected {what}, found {}", self.tok))
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.tok, Tok::Ident(s) if s == kw)
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut v = vec![self.and()?];
        while self.is_kw("or") {
            self.bump()?;
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::Or(v)
        })
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut v = vec![self.unary()?];
        while self.is_kw("and") {
            self.bump()?;
            v.push(self.unary()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::And(v)
        })
    }

    fn enter(&mut self) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.lex.err(
                self.at,
                format!("nesting deeper than {MAX_DEPTH} levels of `(` and `not`"),
            ));
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        if self.is_kw("not") {
            self.enter()?;
            self.bump()?;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        if self.tok == Tok::LParen {
            self.enter()?;
            self.bump()?;
            let e = self.or()?;
            if self.tok != Tok::RParen {
                return Err(self.expected("`)` or `and`/`or`"));
            }
            self.bump()?;
            self.depth -= 1;
            return Ok(e);
        }
        self.compare()
    }

    fn attr_names() -> String {
        Attr::ALL
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn compare(&mut self) -> Result<Expr, QueryError> {
        let Tok::Ident(name) = &self.tok else {
            return Err(self.expected(&format!(
                "an attribute ({}), `not` or `(`",
                Self::attr_names()
            )));
        };
        let attr = Attr::parse(name).ok_or_else(|| {
            self.lex.err(
                self.at,
                format!(
                    "unknown attribute `{name}`; expected one of {}",
                    Self::attr_names()
                ),
            )
        })?;
        self.bump()?;
        let op = match &self.tok {
            Tok::EqEq => Op::Eq,
            Tok::NotEq => Op::Ne,
            Tok::Ident(s) if s == "starts_with" => Op::StartsWith,
            Tok::Ident(s) if s == "contains" => Op::Contains,
            Tok::Ident(s) if s == "in" => {
                self.bump()?;
                if self.tok != Tok::LBracket {
                    return Err(self.expected("`[` after `in`"));
                }
                self.bump()?;
                let mut values = vec![self.value(attr, Op::Eq)?];
                loop {
                    match self.tok {
                        Tok::Comma => {
                            self.bump()?;
                            values.push(self.value(attr, Op::Eq)?);
                        }
                        Tok::RBracket => {
                            self.bump()?;
                            return Ok(Expr::In(attr, values));
                        }
                        _ => return Err(self.expected("`,` or `]`")),
                    }
                }
            }
            _ => {
                return Err(self.expected(&format!(
                    "an operator after `{}` (`==`, `!=`, `starts_with`, `contains` or `in`)",
                    attr.name()
                )))
            }
        };
        self.bump()?;
        let v = self.value(attr, op)?;
        Ok(Expr::Compare(attr, op, v))
    }

    /// A string literal, checked against an enumerated attribute's values for `==`/`!=`/`in`.
    fn value(&mut self, attr: Attr, op: Op) -> Result<String, QueryError> {
        let Tok::Str(s) = &self.tok else {
            return Err(self.expected("a string literal in double quotes"));
        };
        let v = s.to_lowercase();
        if let (Some(allowed), Op::Eq | Op::Ne) = (attr.values(), op) {
            if !allowed.contains(&v.as_str()) {
                return Err(self.lex.err(
                    self.at,
                    format!(
                        "{} is never {s:?}; expected one of {}",
                        attr.name(),
                        allowed
                            .iter()
                            .map(|a| format!("\"{a}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        self.bump()?;
        Ok(v)
    }
}

/// Parses a query.
pub fn parse(src: &str) -> Result<Expr, QueryError> {
    if src.len() > MAX_QUERY_LEN {
        return Err(QueryError {
            column: 1,
            message: format!("query longer than {MAX_QUERY_LEN} bytes"),
        });
    }
    let mut p = Parser {
        lex: Lexer { src, pos: 0 },
        tok: Tok::End,
        at: 0,
        depth: 0,
    };
    p.bump()?;
    if p.tok == Tok::End {
        return Err(p.expected("a condition such as `device_type == \"hololens\"`"));
    }
    let e = p.or()?;
    if p.tok != Tok::End {
        return Err(p.expected("`and`, `or` or end of query"));
    }
    Ok(e)
}

/// Whether `d` is a HoloLens: OSEdition 135/136 or a DeviceType containing `Holographic`.
pub fn is_hololens(d: &Device) -> bool {
    matches!(d.os_edition.as_deref().map(str::trim), Some("135" | "136"))
        || d.device_type
            .as_deref()
            .is_some_and(|t| t.to_ascii_lowercase().contains("holographic"))
}

/// The derived device type: `hololens` or `windows-pc`.
pub fn device_kind(d: &Device) -> &'static str {
    if is_hololens(d) {
        "hololens"
    } else {
        "windows-pc"
    }
}

/// The enrollment method: `autopilot`, `bulk`, `device` or `user`.
pub fn enrollment_method(d: &Device) -> &'static str {
    if d.autopilot_serial.is_some() {
        "autopilot"
    } else if d.bulk {
        "bulk"
    } else if d.enrollment_type.eq_ignore_ascii_case("device") {
        "device"
    } else {
        "user"
    }
}

/// The value of `attr` on `d` (`None`: absent).
pub fn value<'d>(d: &'d Device, attr: Attr) -> Option<Cow<'d, str>> {
    let inv = |k: &str| d.inventory.get(k).map(|s| Cow::Borrowed(s.as_str()));
    let own = |v: &'d Option<String>| v.as_deref().map(Cow::Borrowed);
    match attr {
        Attr::DeviceType => Some(Cow::Borrowed(device_kind(d))),
        Attr::OsVersion => inv("./DevDetail/SwV").or_else(|| own(&d.os_version)),
        Attr::OsEdition => own(&d.os_edition),
        Attr::Enrollment => Some(Cow::Borrowed(enrollment_method(d))),
        Attr::GroupTag => own(&d.group_tag),
        Attr::User => d
            .assigned_user
            .as_ref()
            .map(|a| Cow::Borrowed(a.upn.as_str()))
            .or_else(|| own(&d.upn)),
        Attr::Model => inv("./DevInfo/Mod"),
        Attr::Manufacturer => inv("./DevInfo/Man"),
        Attr::Name => inv("./DevDetail/Ext/Microsoft/DeviceName").or_else(|| own(&d.device_name)),
        Attr::State => Some(Cow::Borrowed(match d.state {
            DeviceState::Enrolled => "enrolled",
            DeviceState::Unenrolled => "unenrolled",
        })),
        Attr::DeviceId => Some(Cow::Borrowed(d.device_id.as_str())),
    }
}

impl Expr {
    /// Whether `d` satisfies the query.
    pub fn matches(&self, d: &Device) -> bool {
        match self {
            Expr::Compare(attr, op, want) => {
                let Some(have) = value(d, *attr) else {
                    return *op == Op::Ne;
                };
                let have = have.to_lowercase();
                match op {
                    Op::Eq => have == *want,
                    Op::Ne => have != *want,
                    Op::StartsWith => have.starts_with(want.as_str()),
                    Op::Contains => have.contains(want.as_str()),
                }
            }
            Expr::In(attr, values) => value(d, *attr).is_some_and(|h| {
                let h = h.to_lowercase();
                values.contains(&h)
            }),
            Expr::Not(e) => !e.matches(d),
            Expr::And(v) => v.iter().all(|e| e.matches(d)),
            Expr::Or(v) => v.iter().any(|e| e.matches(d)),
        }
    }

    /// Whether the query tests `attr` anywhere.
    /// Whether every device this expression matches has `attr` equal to `value` (lower-case):
    /// true for `attr == "value"`, `attr in ["value"]`, an `and` with such a term, or an `or`
    /// of such terms. Used to tell a HoloLens-only group (`device_type == "hololens" and …`).
    pub fn implies_eq(&self, attr: Attr, value: &str) -> bool {
        match self {
            Expr::Compare(a, Op::Eq, v) => *a == attr && v == value,
            Expr::In(a, vs) => *a == attr && !vs.is_empty() && vs.iter().all(|v| v == value),
            Expr::And(v) => v.iter().any(|e| e.implies_eq(attr, value)),
            Expr::Or(v) => !v.is_empty() && v.iter().all(|e| e.implies_eq(attr, value)),
            Expr::Compare(..) | Expr::Not(_) => false,
        }
    }

    /// Whether the expression tests `attr` anywhere.
    pub fn mentions(&self, attr: Attr) -> bool {
        match self {
            Expr::Compare(a, _, _) | Expr::In(a, _) => *a == attr,
            Expr::Not(e) => e.mentions(attr),
            Expr::And(v) | Expr::Or(v) => v.iter().any(|e| e.mentions(attr)),
        }
    }
}

/// A parsed dynamic-group query ready to evaluate. Unless the query tests `state`, only
/// enrolled devices match.
#[derive(Debug, Clone)]
pub struct Query {
    expr: Expr,
    any_state: bool,
}

impl Query {
    /// Parses `src`.
    pub fn parse(src: &str) -> Result<Query, QueryError> {
        let expr = parse(src)?;
        Ok(Query {
            any_state: expr.mentions(Attr::State),
            expr,
        })
    }

    /// The parsed expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Whether `d` belongs to the group.
    pub fn matches(&self, d: &Device) -> bool {
        (self.any_state || d.state == DeviceState::Enrolled) && self.expr.matches(d)
    }
}

/// Fuzz property: any input parses or fails with an in-range column, never panics; a parsed
/// query evaluates on a sample device.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let src = String::from_utf8_lossy(data);
    match Query::parse(&src) {
        Ok(q) => {
            let d = Device {
                device_id: "D".into(),
                os_edition: Some("136".into()),
                group_tag: Some("lab".into()),
                ..Device::default()
            };
            let _ = q.matches(&d);
        }
        Err(e) => {
            assert!(e.column >= 1 && e.column <= src.chars().count() + 1, "{e}");
            assert!(!e.message.is_empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hololens_only_queries_are_recognised() {
        let yes = [
            r#"device_type == "hololens""#,
            r#"device_type == "HoloLens" and group_tag == "lab""#,
            r#"device_type in ["hololens"]"#,
            r#"(device_type == "hololens" and user == "a") or (device_type == "hololens")"#,
        ];
        let no = [
            r#"group_tag == "lab""#,
            r#"device_type != "windows-pc""#,
            r#"device_type == "hololens" or group_tag == "lab""#,
            r#"not device_type == "windows-pc""#,
            r#"device_type in ["hololens", "windows-pc"]"#,
        ];
        for q in yes {
            assert!(
                parse(q).unwrap().implies_eq(Attr::DeviceType, "hololens"),
                "{q}"
            );
        }
        for q in no {
            assert!(
                !parse(q).unwrap().implies_eq(Attr::DeviceType, "hololens"),
                "{q}"
            );
        }
    }

    fn dev() -> Device {
        Device {
            device_id: "D1".into(),
            os_edition: Some("136".into()),
            group_tag: Some("Lab".into()),
            device_name: Some("HOLO-042".into()),
            upn: Some("alice@example.com".into()),
            ..Device::default()
        }
    }

    #[test]
    fn evaluates_and_precedence() {
        let d = dev();
        let m = |q: &str| Query::parse(q).unwrap().matches(&d);
        assert!(m(r#"device_type == "hololens" and group_tag == "lab""#));
        assert!(!m(r#"device_type == "windows-pc""#));
        // and binds tighter than or: false and false or true == true
        assert!(m(
            r#"group_tag == "x" and name == "y" or user == "ALICE@example.com""#
        ));
        // not binds tighter than and
        assert!(!m(r#"not group_tag == "lab" and name starts_with "holo""#));
        assert!(m(r#"not (group_tag == "x" and name == "y")"#));
        assert!(m(r#"name starts_with "holo-" and name contains "04""#));
        assert!(m(r#"enrollment in ["bulk", "user"]"#));
        assert!(!m(r#"model == "x""#), "absent attribute");
        assert!(m(r#"model != "x""#), "absent attribute");
        assert!(m(r#"group_tag == "\u{4C}ab""#));
        assert!(m("name contains \"\\\\\" or state == \"enrolled\""));
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = |q: &str| parse(q).unwrap_err();
        let x = e(r#"device_type = "hololens""#);
        assert_eq!(x.column, 13);
        assert!(x.message.contains("expected `==`"), "{x}");
        let x = e(r#"colour == "red""#);
        assert_eq!(x.column, 1);
        assert!(x.message.contains("unknown attribute `colour`"), "{x}");
        let x = e(r#"group_tag == lab"#);
        assert_eq!(x.column, 14);
        assert!(x.message.contains("expected a string literal"), "{x}");
        let x = e(r#"(group_tag == "a""#);
        assert_eq!(x.column, 18);
        assert!(x.message.contains("expected `)`"), "{x}");
        let x = e(r#"group_tag == "a"#);
        assert!(x.message.contains("unterminated string"), "{x}");
        let x = e(r#"device_type == "hololens2""#);
        assert!(x.message.contains("\"windows-pc\", \"hololens\""), "{x}");
        let x = e(r#"group_tag in ["a" "b"]"#);
        assert_eq!(x.column, 19);
        assert!(x.message.contains("`,` or `]`"), "{x}");
        let x = e(r#"group_tag == "a" group_tag"#);
        assert!(x.message.contains("`and`, `or` or end of query"), "{x}");
        assert!(e("").message.contains("expected a condition"));
        assert!(e(r#"name == "\q""#).message.contains("unknown escape"));
        let x = e(r#"é == "x""#);
        assert_eq!(x.column, 1);
        let deep = format!("{}group_tag == \"a\"{}", "(".repeat(40), ")".repeat(40));
        assert!(e(&deep).message.contains("nesting deeper"));
        let nots = format!("{}group_tag == \"a\"", "not ".repeat(40));
        assert!(e(&nots).message.contains("nesting deeper"));
        assert!(e(&"a".repeat(MAX_QUERY_LEN + 1)).message.contains("longer"));
    }

    #[test]
    fn unenrolled_devices_match_only_queries_about_state() {
        let mut d = dev();
        d.state = DeviceState::Unenrolled;
        assert!(!Query::parse(r#"group_tag == "lab""#).unwrap().matches(&d));
        assert!(Query::parse(r#"state == "unenrolled""#)
            .unwrap()
            .matches(&d));
    }

    #[test]
    fn derived_attributes() {
        let mut d = Device::default();
        assert_eq!(device_kind(&d), "windows-pc");
        d.device_type = Some("Windows.Holographic".into());
        assert_eq!(device_kind(&d), "hololens");
        d.enrollment_type = "Device".into();
        assert_eq!(enrollment_method(&d), "device");
        d.bulk = true;
        assert_eq!(enrollment_method(&d), "bulk");
        d.autopilot_serial = Some("S1".into());
        assert_eq!(enrollment_method(&d), "autopilot");
    }
}
