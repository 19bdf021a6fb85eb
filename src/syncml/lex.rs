//! A small XML tokenizer for SyncML: elements, attributes, text, CDATA, comments and processing
//! instructions. No DTDs (a `<!DOCTYPE` is an error), no entities beyond the five predefined ones
//! and character references. It scans with word-at-a-time searches and never copies text that
//! needs no unescaping.

use super::error::ParseError;
use super::scan::{find_any, find_seq, is_ws_byte};

/// One token.
#[derive(Debug)]
pub(crate) enum Tok<'a> {
    /// `<name attrs>` or `<name attrs/>`.
    Start {
        name: &'a str,
        attrs: &'a str,
        empty: bool,
        at: usize,
    },
    /// `</name>`.
    End { name: &'a str, at: usize },
    /// Character data; `plain` when it holds no `&` and no CR.
    Text {
        raw: &'a str,
        plain: bool,
        at: usize,
    },
    /// A CDATA section's content; `plain` when it holds no CR.
    CData { raw: &'a str, plain: bool },
    /// End of input.
    Eof,
}

pub(crate) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    /// Where the document starts (after a BOM); an XML declaration is allowed only there.
    start: usize,
}

fn syntax(offset: usize, reason: &'static str) -> Box<ParseError> {
    Box::new(ParseError::Syntax {
        path: String::new(),
        offset,
        reason,
    })
}

fn eof() -> Box<ParseError> {
    Box::new(ParseError::UnexpectedEof {
        path: String::new(),
    })
}

/// Bytes that cannot appear in a name.
#[inline]
fn name_stop(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t'
            | b'\n'
            | b'\r'
            | b'/'
            | b'>'
            | b'<'
            | b'='
            | b'"'
            | b'\''
            | b'&'
            | b'!'
            | b'?'
    )
}

/// Checks a name scanned by `Lexer::name_end` (`colons` = number of `:` in it).
#[inline]
fn check_name(name: &str, colons: usize, at: usize) -> Result<(), Box<ParseError>> {
    match name.as_bytes().first() {
        None => Err(syntax(at, "empty name")),
        Some(b'0'..=b'9' | b'-' | b'.' | b':' | b';' | b',') => Err(syntax(at, "invalid name")),
        Some(_) if colons > 1 || (colons == 1 && name.ends_with(':')) => {
            Err(syntax(at, "invalid qualified name"))
        }
        Some(_) => Ok(()),
    }
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        let start = if src.starts_with('\u{feff}') { 3 } else { 0 };
        Lexer {
            src,
            pos: start,
            start,
        }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Skips XML white space.
    #[inline(always)]
    pub(crate) fn skip_ws(&mut self) {
        let b = self.bytes();
        while let Some(&c) = b.get(self.pos) {
            if !is_ws_byte(c) {
                break;
            }
            self.pos += 1;
        }
    }

    /// Consumes `</name>` if it comes next (the common case, without a general tokenisation).
    #[inline(always)]
    pub(crate) fn try_end(&mut self, name: &str) -> bool {
        let b = self.bytes();
        let p = self.pos;
        let n = name.len();
        if b.get(p..p + 2) == Some(b"</")
            && b.get(p + 2..p + 2 + n) == Some(name.as_bytes())
            && b.get(p + 2 + n) == Some(&b'>')
        {
            self.pos = p + 3 + n;
            true
        } else {
            false
        }
    }

    #[inline]
    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    /// The next token; comments and processing instructions are skipped.
    #[inline]
    pub(crate) fn next(&mut self) -> Result<Tok<'a>, Box<ParseError>> {
        let b = self.bytes();
        loop {
            let at = self.pos;
            let Some(&c) = b.get(at) else {
                return Ok(Tok::Eof);
            };
            if c != b'<' {
                return Ok(self.text(at));
            }
            match b.get(at + 1) {
                Some(b'/') => return self.end_tag(at),
                Some(b'!' | b'?') => {
                    if let Some(tok) = self.markup(at)? {
                        return Ok(tok);
                    }
                }
                Some(_) => return self.start_tag(at),
                None => return Err(eof()),
            }
        }
    }

    /// `<!…` or `<?…` at `at`: a CDATA token, or `None` after skipping a comment or PI.
    #[inline(never)]
    fn markup(&mut self, at: usize) -> Result<Option<Tok<'a>>, Box<ParseError>> {
        let b = self.bytes();
        if b.get(at + 1) == Some(&b'?') {
            let end = find_seq(b, at + 2, b"?>").ok_or_else(eof)?;
            let target_end = b[at + 2..end]
                .iter()
                .position(|&x| is_ws_byte(x))
                .map_or(end, |p| at + 2 + p);
            let target = &self.src[at + 2..target_end];
            if target.is_empty() {
                return Err(syntax(at, "empty processing instruction target"));
            }
            if target.eq_ignore_ascii_case("xml") && at != self.start {
                return Err(syntax(at, "XML declaration not at the start"));
            }
            self.pos = end + 2;
            return Ok(None);
        }
        let rest = &b[at..];
        if rest.starts_with(b"<!--") {
            let end = find_seq(b, at + 4, b"--").ok_or_else(eof)?;
            if b.get(end + 2) != Some(&b'>') {
                return Err(syntax(end, "`--` inside a comment"));
            }
            self.pos = end + 3;
            Ok(None)
        } else if rest.starts_with(b"<![CDATA[") {
            let s = at + 9;
            let end = find_seq(b, s, b"]]>").ok_or_else(eof)?;
            self.pos = end + 3;
            let raw = &self.src[s..end];
            let plain = find_any(raw.as_bytes(), 0, [b'\r']).is_none();
            Ok(Some(Tok::CData { raw, plain }))
        } else if rest.starts_with(b"<!DOCTYPE") {
            Err(ParseError::DoctypeForbidden { offset: at }.into())
        } else {
            Err(syntax(at, "unsupported markup declaration"))
        }
    }

    #[inline]
    fn text(&mut self, at: usize) -> Tok<'a> {
        let b = self.bytes();
        let (end, plain) = match find_any(b, at, [b'<', b'&', b'\r']) {
            None => (b.len(), true),
            Some(i) if b[i] == b'<' => (i, true),
            Some(i) => (find_any(b, i, [b'<']).unwrap_or(b.len()), false),
        };
        self.pos = end;
        Tok::Text {
            raw: &self.src[at..end],
            plain,
            at,
        }
    }

    /// End of the name starting at `from`, and how many `:` it holds.
    #[inline]
    fn name_end(&self, from: usize) -> (usize, usize) {
        let b = self.bytes();
        let mut i = from;
        let mut colons = 0;
        while let Some(&c) = b.get(i) {
            if name_stop(c) {
                break;
            }
            colons += usize::from(c == b':');
            i += 1;
        }
        (i, colons)
    }

    fn end_tag(&mut self, at: usize) -> Result<Tok<'a>, Box<ParseError>> {
        let b = self.bytes();
        let s = at + 2;
        let (e, colons) = self.name_end(s);
        let name = &self.src[s..e];
        check_name(name, colons, s)?;
        let mut i = e;
        while i < b.len() && is_ws_byte(b[i]) {
            i += 1;
        }
        match b.get(i) {
            Some(b'>') => {
                self.pos = i + 1;
                Ok(Tok::End { name, at })
            }
            Some(_) => Err(syntax(i, "expected `>` in end tag")),
            None => Err(eof()),
        }
    }

    fn start_tag(&mut self, at: usize) -> Result<Tok<'a>, Box<ParseError>> {
        let b = self.bytes();
        let s = at + 1;
        let (e, colons) = self.name_end(s);
        let name = &self.src[s..e];
        check_name(name, colons, s)?;
        // Fast path: no attributes.
        match b.get(e) {
            Some(b'>') => {
                self.pos = e + 1;
                return Ok(Tok::Start {
                    name,
                    attrs: "",
                    empty: false,
                    at,
                });
            }
            Some(b'/') if b.get(e + 1) == Some(&b'>') => {
                self.pos = e + 2;
                return Ok(Tok::Start {
                    name,
                    attrs: "",
                    empty: true,
                    at,
                });
            }
            None => return Err(eof()),
            _ => {}
        }
        // Attributes: (S name S? = S? quoted)* S? then `>` or `/>`.
        let attrs_start = e;
        let mut i = e;
        loop {
            let had_ws = i < b.len() && is_ws_byte(b[i]);
            while i < b.len() && is_ws_byte(b[i]) {
                i += 1;
            }
            match b.get(i) {
                None => return Err(eof()),
                Some(b'>') => {
                    self.pos = i + 1;
                    return Ok(Tok::Start {
                        name,
                        attrs: &self.src[attrs_start..i],
                        empty: false,
                        at,
                    });
                }
                Some(b'/') => {
                    return match b.get(i + 1) {
                        Some(b'>') => {
                            self.pos = i + 2;
                            Ok(Tok::Start {
                                name,
                                attrs: &self.src[attrs_start..i],
                                empty: true,
                                at,
                            })
                        }
                        None => Err(eof()),
                        Some(_) => Err(syntax(i, "expected `/>`")),
                    };
                }
                Some(_) if !had_ws => {
                    return Err(syntax(i, "expected white space before attribute"))
                }
                Some(_) => {}
            }
            let ns = i;
            let (e, colons) = self.name_end(i);
            i = e;
            check_name(&self.src[ns..i], colons, ns)?;
            while i < b.len() && is_ws_byte(b[i]) {
                i += 1;
            }
            if b.get(i) != Some(&b'=') {
                return Err(if i >= b.len() {
                    eof()
                } else {
                    syntax(i, "expected `=` after attribute name")
                });
            }
            i += 1;
            while i < b.len() && is_ws_byte(b[i]) {
                i += 1;
            }
            let q = match b.get(i) {
                Some(&q @ (b'"' | b'\'')) => q,
                Some(_) => return Err(syntax(i, "expected a quoted attribute value")),
                None => return Err(eof()),
            };
            let vend = find_any(b, i + 1, [q, b'<']).ok_or_else(eof)?;
            if b[vend] == b'<' {
                return Err(syntax(vend, "`<` in attribute value"));
            }
            i = vend + 1;
        }
    }
}

/// Iterates over `(name, raw value)` in an attribute list the lexer already checked.
pub(crate) fn attributes(attrs: &str) -> impl Iterator<Item = (&str, &str)> {
    let b = attrs.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() && is_ws_byte(b[i]) {
            i += 1;
        }
        let ns = i;
        while i < b.len() && b[i] != b'=' && !is_ws_byte(b[i]) {
            i += 1;
        }
        let name = attrs.get(ns..i)?;
        while i < b.len() && b[i] != b'"' && b[i] != b'\'' {
            i += 1;
        }
        let q = *b.get(i)?;
        let vs = i + 1;
        let ve = find_any(b, vs, [q])?;
        i = ve + 1;
        Some((name, attrs.get(vs..ve)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_iteration() {
        let v: Vec<_> = attributes(r#" xmlns="a" b = 'c d' "#).collect();
        assert_eq!(v, vec![("xmlns", "a"), ("b", "c d")]);
    }
}
