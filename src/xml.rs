//! Bounded, namespace-aware XML reading and escaping writer helpers (quick-xml 0.42).
//!
//! Owns: turning untrusted request bytes into a small owned element tree ([`Element`]) with
//! every element and attribute name resolved to `(namespace URI, local name)`, and the escaping
//! primitives the writers use. Carries no protocol meaning (no SOAP, no SyncML names here).
//!
//! Hardening rules (all enforced by [`parse`] / [`parse_with`]):
//! * input larger than [`Limits::max_bytes`] (default [`MAX_INPUT_BYTES`]) is rejected before
//!   any parsing;
//! * the input must be UTF-8 (an optional BOM is skipped); anything else is rejected;
//! * any `<!DOCTYPE` (hence any DTD and any entity declaration) is rejected — entities are never
//!   expanded; only the five predefined entities and character references are resolved;
//! * element depth and element count are bounded;
//! * unbound prefixes, mismatched end tags and unclosed elements are errors.
//!
//! Must not: do I/O, panic on any input, or allocate more than a small multiple of the input.

use std::borrow::Cow;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// Default maximum input size accepted by [`parse`]: 256 KiB. A device RST with a 2048-bit
/// CSR and a full `AdditionalContext` is about 6 KiB.
pub const MAX_INPUT_BYTES: usize = 256 * 1024;
/// Default maximum element nesting depth accepted by [`parse`].
pub const MAX_DEPTH: usize = 32;
/// Default maximum number of elements accepted by [`parse`].
pub const MAX_ELEMENTS: usize = 4096;

/// Resource limits for [`parse_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum input size in bytes.
    pub max_bytes: usize,
    /// Maximum element nesting depth (the root is depth 1).
    pub max_depth: usize,
    /// Maximum number of elements in the document.
    pub max_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: MAX_INPUT_BYTES,
            max_depth: MAX_DEPTH,
            max_elements: MAX_ELEMENTS,
        }
    }
}

/// Why a document was refused. Every variant is a peer fault (bad input), never an internal one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// The input exceeds [`Limits::max_bytes`].
    #[error("document too large: {len} bytes (max {max})")]
    TooLarge {
        /// Input length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The input is not valid UTF-8.
    #[error("document is not valid UTF-8 (at byte {valid_up_to})")]
    InvalidUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// The document contains a `<!DOCTYPE` (DTDs and entity declarations are refused).
    #[error("DOCTYPE/DTD is not allowed")]
    Doctype,
    /// Nesting deeper than [`Limits::max_depth`].
    #[error("document nested too deeply (max depth {max})")]
    TooDeep {
        /// Configured maximum.
        max: usize,
    },
    /// More elements than [`Limits::max_elements`].
    #[error("too many elements (max {max})")]
    TooManyElements {
        /// Configured maximum.
        max: usize,
    },
    /// A reference to an entity other than the five predefined ones.
    #[error("undeclared entity reference &{name};")]
    UnknownEntity {
        /// The entity name as written.
        name: String,
    },
    /// The document has no root element.
    #[error("document has no root element")]
    NoRoot,
    /// Any other well-formedness or namespace error reported by the tokenizer.
    #[error("malformed XML: {reason}")]
    Malformed {
        /// Tokenizer message (no input echoed beyond what quick-xml reports).
        reason: String,
    },
}

/// One attribute with its resolved namespace (`None` for unprefixed attributes, which per
/// Namespaces in XML have no namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Namespace URI, `None` when the attribute name is unprefixed.
    pub ns: Option<String>,
    /// Local name.
    pub local: String,
    /// Unescaped value.
    pub value: String,
}

/// One element of the parsed tree. `text` is the concatenation of this element's own character
/// data (text, CDATA, resolved references), not that of its descendants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Namespace URI, `None` when the element is in no namespace.
    pub ns: Option<String>,
    /// Local name.
    pub local: String,
    /// Attributes except namespace declarations, in document order.
    pub attrs: Vec<Attr>,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Own character data, unescaped (untrimmed).
    pub text: String,
}

impl Element {
    /// True when this element is `{ns}local`.
    pub fn is(&self, ns: &str, local: &str) -> bool {
        self.local == local && self.ns.as_deref() == Some(ns)
    }

    /// First child `{ns}local`.
    pub fn child(&self, ns: &str, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, local))
    }

    /// All children `{ns}local`, in document order.
    pub fn children_named<'s>(
        &'s self,
        ns: &'s str,
        local: &'s str,
    ) -> impl Iterator<Item = &'s Element> + 's {
        self.children.iter().filter(move |c| c.is(ns, local))
    }

    /// First child whose namespace satisfies `ns_ok` and whose local name is `local`.
    pub fn child_where(&self, ns_ok: impl Fn(&str) -> bool, local: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.local == local && c.ns.as_deref().is_some_and(&ns_ok))
    }

    /// All children whose namespace satisfies `ns_ok` and whose local name is `local`.
    pub fn children_where<'s, F>(
        &'s self,
        ns_ok: F,
        local: &'s str,
    ) -> impl Iterator<Item = &'s Element> + 's
    where
        F: Fn(&str) -> bool + 's,
    {
        self.children
            .iter()
            .filter(move |c| c.local == local && c.ns.as_deref().is_some_and(&ns_ok))
    }

    /// Attribute value by namespace (`None` = unprefixed) and local name.
    pub fn attr(&self, ns: Option<&str>, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.local == local && a.ns.as_deref() == ns)
            .map(|a| a.value.as_str())
    }

    /// Own text with leading/trailing XML whitespace removed.
    pub fn text_trimmed(&self) -> &str {
        self.text
            .trim_matches(|c: char| matches!(c, ' ' | '\t' | '\r' | '\n'))
    }

    /// True when the element carries `xsi:nil="true"` (or `"1"`).
    pub fn is_nil(&self) -> bool {
        matches!(self.attr(Some(NS_XSI), "nil"), Some("true" | "1"))
    }
}

/// XML Schema instance namespace (`xsi`).
pub const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// Parse with the default [`Limits`].
pub fn parse(input: &[u8]) -> Result<Element, XmlError> {
    parse_with(input, &Limits::default())
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed {
        reason: e.to_string(),
    }
}

/// Parse `input` into an owned element tree, enforcing `limits` and the rules in the module
/// documentation. Returns the root element.
pub fn parse_with(input: &[u8], limits: &Limits) -> Result<Element, XmlError> {
    if input.len() > limits.max_bytes {
        return Err(XmlError::TooLarge {
            len: input.len(),
            max: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(input).map_err(|e| XmlError::InvalidUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);

    let mut reader = NsReader::from_str(text);
    {
        let cfg = reader.config_mut();
        cfg.check_end_names = true;
        cfg.expand_empty_elements = false;
        cfg.check_comments = true;
    }

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;

    loop {
        let (elem_ns, event) = reader.read_resolved_event().map_err(malformed)?;
        let elem_ns = resolved_to_option(elem_ns)?;
        match event {
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Start(ref s) | Event::Empty(ref s) => {
                let is_empty = matches!(event, Event::Empty(_));
                if root.is_some() {
                    return Err(malformed("content after the root element"));
                }
                count += 1;
                if count > limits.max_elements {
                    return Err(XmlError::TooManyElements {
                        max: limits.max_elements,
                    });
                }
                if stack.len() + 1 > limits.max_depth {
                    return Err(XmlError::TooDeep {
                        max: limits.max_depth,
                    });
                }
                let el = Element {
                    ns: elem_ns,
                    local: s.local_name().as_ref().to_owned(),
                    attrs: read_attrs(&reader, s)?,
                    children: Vec::new(),
                    text: String::new(),
                };
                if is_empty {
                    close(&mut stack, &mut root, el);
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| malformed("unexpected end tag"))?;
                close(&mut stack, &mut root, el);
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                push_text(&mut stack, &content)?;
            }
            Event::CData(c) => {
                let content = c.xml10_content();
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&content),
                    None => return Err(malformed("CDATA outside the root element")),
                }
            }
            Event::GeneralRef(r) => {
                let resolved: Cow<'_, str> = if r.is_char_ref() {
                    match r.resolve_char_ref().map_err(malformed)? {
                        Some(c) => Cow::Owned(c.to_string()),
                        None => return Err(malformed("invalid character reference")),
                    }
                } else {
                    let name = r.xml10_content();
                    match name.as_ref() {
                        "lt" => Cow::Borrowed("<"),
                        "gt" => Cow::Borrowed(">"),
                        "amp" => Cow::Borrowed("&"),
                        "apos" => Cow::Borrowed("'"),
                        "quot" => Cow::Borrowed("\""),
                        other => {
                            return Err(XmlError::UnknownEntity {
                                name: other.chars().take(64).collect(),
                            })
                        }
                    }
                };
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&resolved),
                    None => return Err(malformed("reference outside the root element")),
                }
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed("unexpected end of document: unclosed element"));
    }
    root.ok_or(XmlError::NoRoot)
}

fn resolved_to_option(r: ResolveResult<'_>) -> Result<Option<String>, XmlError> {
    match r {
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Bound(ns) => Ok(Some(ns.0.to_owned())),
        ResolveResult::Unknown(p) => Err(malformed(format_args!(
            "unbound namespace prefix '{}'",
            p.chars().take(64).collect::<String>()
        ))),
    }
}

fn push_text(stack: &mut [Element], content: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(top) => {
            top.text.push_str(content);
            Ok(())
        }
        None if content
            .chars()
            .all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) =>
        {
            Ok(())
        }
        None => Err(malformed("text outside the root element")),
    }
}

fn close(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

fn read_attrs(reader: &NsReader<&[u8]>, s: &BytesStart<'_>) -> Result<Vec<Attr>, XmlError> {
    let mut out = Vec::new();
    for a in s.attributes() {
        let a = a.map_err(malformed)?;
        let key = a.key;
        if key.as_namespace_binding().is_some() {
            continue;
        }
        let (ns, local) = reader.resolver().resolve_attribute(key);
        let ns = resolved_to_option(ns)?;
        let value =
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| match e {
                    quick_xml::Error::Escape(
                        quick_xml::escape::EscapeError::UnrecognizedEntity(_, name),
                    ) => XmlError::UnknownEntity {
                        name: name.chars().take(64).collect(),
                    },
                    other => malformed(other),
                })?;
        out.push(Attr {
            ns,
            local: local.as_ref().to_owned(),
            value: value.into_owned(),
        });
    }
    Ok(out)
}

/// Escape character data for element content (`&`, `<`, `>`, `"`, `'` all escaped).
pub fn escape_text(s: &str) -> Cow<'_, str> {
    quick_xml::escape::escape(s)
}

/// Escape an attribute value for use inside double quotes (all five special characters, plus
/// TAB/CR/LF as character references so attribute-value normalisation does not alter them).
pub fn escape_attr(s: &str) -> Cow<'_, str> {
    if !s
        .bytes()
        .any(|b| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'' | b'\t' | b'\r' | b'\n'))
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Minimal deterministic XML writer: appends to a `String`, no indentation, no declaration
/// unless asked. Names are written verbatim (callers pass constant, valid names); text and
/// attribute values are always escaped.
#[derive(Debug, Default)]
pub struct XmlWriter {
    out: String,
}

impl XmlWriter {
    /// New empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Write `<?xml version="1.0" encoding="UTF-8"?>`.
    pub fn decl(&mut self) -> &mut Self {
        self.out
            .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        self
    }

    fn tag(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.out.push('<');
        self.out.push_str(name);
        for (k, v) in attrs {
            self.out.push(' ');
            self.out.push_str(k);
            self.out.push_str("=\"");
            self.out.push_str(&escape_attr(v));
            self.out.push('"');
        }
    }

    /// Write a start tag `<name k="v"...>`.
    pub fn open(&mut self, name: &str, attrs: &[(&str, &str)]) -> &mut Self {
        self.tag(name, attrs);
        self.out.push('>');
        self
    }

    /// Write an end tag `</name>`.
    pub fn close(&mut self, name: &str) -> &mut Self {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// Write an empty element `<name k="v"/>`.
    pub fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) -> &mut Self {
        self.tag(name, attrs);
        self.out.push_str("/>");
        self
    }

    /// Write `<name k="v">text</name>` with `text` escaped.
    pub fn leaf(&mut self, name: &str, attrs: &[(&str, &str)], text: &str) -> &mut Self {
        self.open(name, attrs);
        self.out.push_str(&escape_text(text));
        self.close(name)
    }

    /// Write escaped character data.
    pub fn text(&mut self, text: &str) -> &mut Self {
        self.out.push_str(&escape_text(text));
        self
    }

    /// The document written so far.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_namespaces_any_prefix() {
        let a = parse(br#"<x:a xmlns:x="urn:1"><b xmlns="urn:2" x:k="v">t&amp;&#65;</b></x:a>"#)
            .unwrap();
        assert!(a.is("urn:1", "a"));
        let b = a.child("urn:2", "b").unwrap();
        assert_eq!(b.text, "t&A");
        assert_eq!(b.attr(Some("urn:1"), "k"), Some("v"));
        assert_eq!(b.attr(None, "k"), None);
    }

    #[test]
    fn rejects_doctype_and_entities() {
        let billion = br#"<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa">]><l>&a;</l>"#;
        assert_eq!(parse(billion), Err(XmlError::Doctype));
        assert!(matches!(
            parse(b"<l>&a;</l>"),
            Err(XmlError::UnknownEntity { .. })
        ));
        assert!(matches!(
            parse(b"<l k=\"&a;\"/>"),
            Err(XmlError::UnknownEntity { .. })
        ));
    }

    #[test]
    fn limits() {
        let small = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        assert!(matches!(
            parse_with(b"<aaaaaaaaaaaaaa/>", &small),
            Err(XmlError::TooLarge { .. })
        ));
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(XmlError::TooDeep { .. })
        ));
        assert!(matches!(
            parse(b"<a>\xff</a>"),
            Err(XmlError::InvalidUtf8 { .. })
        ));
    }

    #[test]
    fn rejects_broken_structure() {
        for bad in [
            &b"<a>"[..],
            b"<a></b>",
            b"",
            b"<a/><b/>",
            b"text",
            b"<p:a/>",
            b"<a></a></a>",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn writer_escapes() {
        let mut w = XmlWriter::new();
        w.leaf("a", &[("k", "x&\"<")], "1<2&3");
        assert_eq!(w.finish(), r#"<a k="x&amp;&quot;&lt;">1&lt;2&amp;3</a>"#);
    }
}
