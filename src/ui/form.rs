//! `application/x-www-form-urlencoded` bodies and query strings, bounded in size and count.

/// Fields of one form or query string, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Form(Vec<(String, String)>);

/// Most fields one form may carry (a profile form of 20 settings rows holds ~110; the body is
/// bounded by [`super::MAX_FORM_BODY`] anyway).
pub const MAX_FIELDS: usize = 128;

/// Why a form could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// Bad `%XX` escape or not UTF-8.
    #[error("invalid percent-encoding in a form field")]
    Encoding,
    /// More than [`MAX_FIELDS`] fields.
    #[error("more than {MAX_FIELDS} form fields")]
    TooManyFields,
}

fn decode(s: &str) -> Result<String, FormError> {
    decode_with(s, true)
}

/// Decodes a path segment (`%XX` only: `+` is a plus sign there).
pub fn decode_segment(s: &str) -> Result<String, FormError> {
    decode_with(s, false)
}

fn decode_with(s: &str, plus_is_space: bool) -> Result<String, FormError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or(FormError::Encoding)?;
                let hex = std::str::from_utf8(hex).map_err(|_| FormError::Encoding)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| FormError::Encoding)?);
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| FormError::Encoding)
}

impl Form {
    /// Parses `a=1&b=2`.
    pub fn parse(s: &str) -> Result<Form, FormError> {
        let mut v = Vec::new();
        for pair in s.split('&').filter(|p| !p.is_empty()) {
            if v.len() == MAX_FIELDS {
                return Err(FormError::TooManyFields);
            }
            let (k, val) = pair.split_once('=').unwrap_or((pair, ""));
            v.push((decode(k)?, decode(val)?));
        }
        Ok(Form(v))
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (checkboxes), in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, `""` when absent (to show a posted value again).
    pub fn value(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// Fields read by another parser (the multipart one), at most [`MAX_FIELDS`] kept.
    pub fn from_pairs(mut pairs: Vec<(String, String)>) -> Form {
        pairs.truncate(MAX_FIELDS);
        Form(pairs)
    }

    /// The first value of `name`, trimmed, `None` when empty.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }
}

/// The errors of a refused form, each against its field (the service's message, as is).
#[derive(Debug, Default, Clone)]
pub struct FieldErrors(Vec<(String, String)>);

impl FieldErrors {
    /// Sets the error of `field`.
    pub fn set(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push((field.into(), message.into()));
    }

    /// The error of `field`, `""` when it has none.
    pub fn get(&self, field: &str) -> &str {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map_or("", |(_, m)| m.as_str())
    }

    /// Whether no field has an error.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Percent-encodes a path segment or query value (RFC 3986 unreserved characters stay).
pub fn enc(s: &str) -> String {
    crate::service::invitations::url_encode(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_bounds() {
        let f = Form::parse("a=1+2&b=%3Cscript%3E&c&a=x").unwrap();
        assert_eq!(f.get("a"), Some("1 2"));
        assert_eq!(f.get("b"), Some("<script>"));
        assert_eq!(f.get("c"), Some(""));
        assert_eq!(f.text("c"), None);
        assert_eq!(Form::parse("a=%zz"), Err(FormError::Encoding));
        assert_eq!(Form::parse("a=%ff"), Err(FormError::Encoding));
        let many = vec!["x=1"; MAX_FIELDS + 1].join("&");
        assert_eq!(Form::parse(&many), Err(FormError::TooManyFields));
        assert_eq!(enc("a b/c@d"), "a%20b%2Fc%40d");
        assert_eq!(decode_segment("a+b%40c").unwrap(), "a+b@c");
    }
}
