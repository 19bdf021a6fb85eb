//! Entity and character reference decoding, line-end normalisation (XML 1.0 §2.11, §4.1, §4.6).
//! Only the five predefined entities exist: there is no DTD.

use std::borrow::Cow;

use super::error::ParseError;
use super::scan::find_any;

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
}
