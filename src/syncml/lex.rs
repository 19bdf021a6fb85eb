//! A small XML tokenizer for SyncML: elements, attributes, text, CDATA, comments and processing
//! instructions. No DTDs (a `<!DOCTYPE` is an error), no entities beyond the five predefined ones
//! and character references. It scans with word-at-a-time searches and never copies text that
//! needs no unescaping.

use std::borrow::Cow;

use super::error::ParseError;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

#[inline(always)]
fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(LO) & !v & HI
}

#[inline(always)]
fn word(h: &[u8], i: usize) -> Option<u64> {
    match h.get(i..i + 8) {
        Some(s) => s.try_into().ok().map(u64::from_le_bytes),
        None => None,
    }
}

/// Position of the first byte in `h[from..]` that is one of `N` needles.
#[inline(always)]
pub(crate) fn find_any<const N: usize>(h: &[u8], from: usize, needles: [u8; N]) -> Option<usize> {
    let mut i = from;
    while let Some(w) = word(h, i) {
        let mut m = 0;
        for n in needles {
            m |= zero_bytes(w ^ (LO * u64::from(n)));
        }
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while i < h.len() {
        if needles.contains(&h[i]) {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[inline]
fn find_seq(h: &[u8], from: usize, seq: &[u8]) -> Option<usize> {
    let first = *seq.first()?;
    let mut i = from;
    loop {
        let j = find_any(h, i, [first])?;
        if h.get(j..j + seq.len()) == Some(seq) {
            return Some(j);
        }
        i = j + 1;
    }
}

/// `true` if `s` is only XML white space.
#[inline]
pub(crate) fn is_ws(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

#[inline]
fn is_ws_byte(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

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
                Some(b'!') => {
                    let rest = &b[at..];
                    if rest.starts_with(b"<!--") {
                        let end = find_seq(b, at + 4, b"--").ok_or_else(eof)?;
                        if b.get(end + 2) != Some(&b'>') {
                            return Err(syntax(end, "`--` inside a comment"));
                        }
                        self.pos = end + 3;
                    } else if rest.starts_with(b"<![CDATA[") {
                        let s = at + 9;
                        let end = find_seq(b, s, b"]]>").ok_or_else(eof)?;
                        self.pos = end + 3;
                        let raw = &self.src[s..end];
                        let plain = find_any(raw.as_bytes(), 0, [b'\r']).is_none();
                        return Ok(Tok::CData { raw, plain });
                    } else if rest.starts_with(b"<!DOCTYPE") {
                        return Err(ParseError::DoctypeForbidden { offset: at }.into());
                    } else {
                        return Err(syntax(at, "unsupported markup declaration"));
                    }
                }
                Some(b'?') => {
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
                }
                Some(_) => return self.start_tag(at),
                None => return Err(eof()),
            }
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

/// Is `c` a character XML 1.0 allows?
fn xml_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn clip(s: &str) -> String {
    s.chars().take(32).collect()
}

/// A character reference (or an unknown entity) at `raw[j]` == `&`: the character and the length of
/// the reference after the `&`.
fn char_ref(raw: &str, j: usize, base: usize) -> Result<(char, usize), Box<ParseError>> {
    let b = raw.as_bytes();
    let semi = b[j + 1..]
        .iter()
        .take(12)
        .position(|&x| x == b';')
        .map(|p| j + 1 + p);
    let Some(semi) = semi else {
        return Err(ParseError::UnknownEntity {
            path: String::new(),
            entity: clip(&raw[j + 1..]),
            offset: base + j,
        }
        .into());
    };
    let name = &raw[j + 1..semi];
    let Some(digits) = name.strip_prefix('#') else {
        return Err(ParseError::UnknownEntity {
            path: String::new(),
            entity: clip(name),
            offset: base + j,
        }
        .into());
    };
    let v = if let Some(hex) = digits.strip_prefix('x') {
        if hex.is_empty() || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            None
        } else {
            u32::from_str_radix(hex, 16).ok()
        }
    } else if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        None
    } else {
        digits.parse::<u32>().ok()
    };
    match v.and_then(char::from_u32).filter(|&c| xml_char(c)) {
        Some(c) => Ok((c, semi - j)),
        None => Err(ParseError::InvalidCharRef {
            path: String::new(),
            reference: clip(name),
            offset: base + j,
        }
        .into()),
    }
}

/// Decodes entity and character references and normalises line ends into `out`.
/// `base` is the offset of `raw` in the input, for errors.
pub(crate) fn unescape_into(
    raw: &str,
    base: usize,
    out: &mut String,
) -> Result<(), Box<ParseError>> {
    let b = raw.as_bytes();
    let mut i = 0;
    while let Some(j) = find_any(b, i, [b'&', b'\r']) {
        out.push_str(&raw[i..j]);
        if b[j] == b'\r' {
            out.push('\n');
            i = j + 1;
            if b.get(i) == Some(&b'\n') {
                i += 1;
            }
            continue;
        }
        let rest = &b[j + 1..];
        let (c, len) = match rest {
            [b'l', b't', b';', ..] => ('<', 3),
            [b'g', b't', b';', ..] => ('>', 3),
            [b'a', b'm', b'p', b';', ..] => ('&', 4),
            [b'q', b'u', b'o', b't', b';', ..] => ('"', 5),
            [b'a', b'p', b'o', b's', b';', ..] => ('\'', 5),
            _ => char_ref(raw, j, base)?,
        };
        out.push(c);
        i = j + 1 + len;
    }
    out.push_str(&raw[i..]);
    Ok(())
}

/// Text of a `Text` token: borrowed when plain, unescaped otherwise.
#[inline]
pub(crate) fn text_value(
    raw: &str,
    plain: bool,
    at: usize,
) -> Result<Cow<'_, str>, Box<ParseError>> {
    if plain {
        Ok(Cow::Borrowed(raw))
    } else {
        let mut s = String::with_capacity(raw.len());
        unescape_into(raw, at, &mut s)?;
        Ok(Cow::Owned(s))
    }
}

/// Content of a CDATA section: verbatim except line ends.
#[inline]
pub(crate) fn cdata_value(raw: &str, plain: bool) -> Cow<'_, str> {
    if plain {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(raw.replace("\r\n", "\n").replace('\r', "\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_any_matches_naive() {
        let hay = b"abcdefghijklmnop<qrstu&vwxyz\rABCDEFGHIJ<";
        for from in 0..hay.len() {
            let naive = hay[from..]
                .iter()
                .position(|c| [b'<', b'&', b'\r'].contains(c))
                .map(|p| p + from);
            assert_eq!(
                find_any(hay, from, [b'<', b'&', b'\r']),
                naive,
                "from {from}"
            );
        }
        // High bytes must not give false positives.
        let hay = "ééééééééé<".as_bytes();
        assert_eq!(find_any(hay, 0, [b'<']), Some(hay.len() - 1));
    }

    #[test]
    fn unescape_cases() {
        let mut s = String::new();
        unescape_into("a&lt;b&gt;&amp;&quot;&apos;&#65;&#x42;\r\nc\rd", 0, &mut s).unwrap();
        assert_eq!(s, "a<b>&\"'AB\nc\nd");
        for bad in [
            "&lol;",
            "&#0;",
            "&#xD800;",
            "&#;",
            "&#x;",
            "&amp",
            "&#99999999999;",
        ] {
            assert!(unescape_into(bad, 0, &mut String::new()).is_err(), "{bad}");
        }
    }

    #[test]
    fn attribute_iteration() {
        let v: Vec<_> = attributes(r#" xmlns="a" b = 'c d' "#).collect();
        assert_eq!(v, vec![("xmlns", "a"), ("b", "c d")]);
    }
}
