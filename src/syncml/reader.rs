//! The parser core: an element stack over the [`super::lex`] tokens with namespace resolution,
//! depth limit and error paths. The element grammar is in [`super::grammar`] and
//! [`super::grammar_cmd`].

use std::borrow::Cow;

use super::error::{Limits, ParseError};
use super::escape::{cdata_value, text_value, unescape_into};
use super::lex::{attributes, Lexer, Tok};
use super::parse::{METINF_NS, SYNCML_NS};
use super::scan::is_ws;
use super::types::*;

/// A namespace, classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ns<'a> {
    None,
    SyncMl,
    MetInf,
    Other(&'a str),
}

impl<'a> Ns<'a> {
    fn classify(uri: &'a str) -> Self {
        match uri {
            "" => Ns::None,
            SYNCML_NS => Ns::SyncMl,
            METINF_NS => Ns::MetInf,
            _ => Ns::Other(uri),
        }
    }

    pub(super) fn is_syncml(self) -> bool {
        matches!(self, Ns::None | Ns::SyncMl)
    }

    pub(super) fn is_meta_child(self) -> bool {
        matches!(self, Ns::None | Ns::SyncMl | Ns::MetInf)
    }
}

/// An open element.
pub(super) struct El<'a> {
    pub(super) name: &'a str,
    pub(super) local: &'a str,
    pub(super) ns: Ns<'a>,
    pub(super) empty: bool,
    pub(super) at: usize,
    /// This element declared namespaces: `close` pops a scope.
    scoped: bool,
}

pub(super) fn unexpected(el: &El<'_>) -> Box<ParseError> {
    Box::new(match el.ns {
        Ns::Other(ns) => ParseError::ForeignNamespace {
            path: String::new(),
            element: el.name.to_owned(),
            namespace: ns.to_owned(),
            offset: el.at,
        },
        _ => ParseError::UnexpectedElement {
            path: String::new(),
            element: el.name.to_owned(),
            offset: el.at,
        },
    })
}

pub(super) fn unexpected_text(at: usize) -> Box<ParseError> {
    Box::new(ParseError::UnexpectedText {
        path: String::new(),
        offset: at,
    })
}

pub(super) struct Parser<'a, 'l> {
    lx: Lexer<'a>,
    pub(super) limits: &'l Limits,
    pub(super) fragment: bool,
    depth: usize,
    pub(super) commands: usize,
    pub(super) items: usize,
    default_ns: Ns<'a>,
    bindings: Vec<(&'a str, Ns<'a>)>,
    /// (default namespace, bindings length) saved by each open element that declared namespaces.
    scopes: Vec<(Ns<'a>, usize)>,
}

pub(super) type R<T> = Result<T, Box<ParseError>>;

impl<'a, 'l> Parser<'a, 'l> {
    pub(super) fn new(src: &'a str, limits: &'l Limits, fragment: bool) -> Self {
        Parser {
            lx: Lexer::new(src),
            limits,
            fragment,
            depth: 0,
            commands: 0,
            items: 0,
            default_ns: Ns::None,
            bindings: Vec::new(),
            scopes: Vec::new(),
        }
    }

    /// Commands up to the end of the input (a fragment), white space, comments and PIs between.
    pub(super) fn top_level_commands(&mut self) -> R<Vec<Command<'a>>> {
        let mut cmds = Vec::new();
        loop {
            match self.lx.next()? {
                Tok::Eof => break,
                Tok::Text { raw, at, .. } => {
                    if !is_ws(raw) {
                        return Err(unexpected_text(at));
                    }
                }
                Tok::CData { .. } => return Err(unexpected_text(self.lx.pos())),
                Tok::End { name, at } => {
                    return Err(ParseError::MismatchedTag {
                        path: String::new(),
                        expected: String::new(),
                        found: name.to_owned(),
                        offset: at,
                    }
                    .into())
                }
                Tok::Start {
                    name,
                    attrs,
                    empty,
                    at,
                } => {
                    let el = self.open(name, attrs, empty, at)?;
                    if let Some(el) = self.command(el, &mut cmds)? {
                        return Err(unexpected(&el));
                    }
                }
            }
        }
        Ok(cmds)
    }

    /// Skips to the root element.
    pub(super) fn prolog(&mut self) -> R<El<'a>> {
        loop {
            match self.lx.next()? {
                Tok::Start {
                    name,
                    attrs,
                    empty,
                    at,
                } => return self.open(name, attrs, empty, at),
                Tok::Text { raw, at, .. } => {
                    if !is_ws(raw) {
                        return Err(unexpected_text(at));
                    }
                }
                Tok::CData { .. } => return Err(unexpected_text(self.lx.pos())),
                Tok::End { at, .. } => {
                    return Err(ParseError::TrailingContent { offset: at }.into())
                }
                Tok::Eof => {
                    return Err(ParseError::UnexpectedEof {
                        path: String::new(),
                    }
                    .into())
                }
            }
        }
    }

    /// Only white space, comments and PIs may follow the root.
    pub(super) fn epilog(&mut self) -> R<()> {
        loop {
            let at = self.lx.pos();
            match self.lx.next()? {
                Tok::Eof => return Ok(()),
                Tok::Text { raw, .. } if is_ws(raw) => {}
                _ => return Err(ParseError::TrailingContent { offset: at }.into()),
            }
        }
    }

    /// Opens an element: namespace declarations, name resolution, depth.
    #[inline]
    pub(super) fn open(
        &mut self,
        name: &'a str,
        attrs: &'a str,
        empty: bool,
        at: usize,
    ) -> R<El<'a>> {
        if self.depth >= self.limits.max_depth {
            return Err(ParseError::TooDeep {
                path: String::new(),
                max: self.limits.max_depth,
            }
            .into());
        }
        let scoped = !attrs.is_empty();
        if scoped {
            self.scopes.push((self.default_ns, self.bindings.len()));
            self.declare(attrs, at)?;
        }
        let (ns, local) = match name.as_bytes().contains(&b':') {
            false => (self.default_ns, name),
            true => match name.split_once(':') {
                Some((prefix, local)) => (self.lookup(prefix, at)?, local),
                None => (self.default_ns, name),
            },
        };
        self.depth += 1;
        Ok(El {
            name,
            local,
            ns,
            empty,
            at,
            scoped,
        })
    }

    fn declare(&mut self, attrs: &'a str, at: usize) -> R<()> {
        for (name, raw) in attributes(attrs) {
            let value: &'a str = if raw.contains('&') {
                // Rare: classify the unescaped URI, keep the raw text for foreign namespaces.
                let mut s = String::new();
                unescape_into(raw, at, &mut s)?;
                match Ns::classify(&s) {
                    Ns::Other(_) => raw,
                    Ns::None => "",
                    Ns::SyncMl => SYNCML_NS,
                    Ns::MetInf => METINF_NS,
                }
            } else {
                raw
            };
            if name == "xmlns" {
                self.default_ns = Ns::classify(value);
            } else if let Some(prefix) = name.strip_prefix("xmlns:") {
                if value.is_empty() {
                    return Err(ParseError::Syntax {
                        path: String::new(),
                        offset: at,
                        reason: "empty namespace name for a prefix",
                    }
                    .into());
                }
                self.bindings.push((prefix, Ns::classify(value)));
            }
        }
        Ok(())
    }

    fn lookup(&self, prefix: &str, at: usize) -> R<Ns<'a>> {
        if prefix == "xml" {
            return Ok(Ns::Other("http://www.w3.org/XML/1998/namespace"));
        }
        match self.bindings.iter().rev().find(|(p, _)| *p == prefix) {
            Some((_, ns)) => Ok(*ns),
            None => Err(ParseError::UnboundPrefix {
                path: String::new(),
                prefix: prefix.to_owned(),
                offset: at,
            }
            .into()),
        }
    }

    fn close(&mut self, el: &El<'a>) {
        if el.scoped {
            if let Some((default_ns, bindings)) = self.scopes.pop() {
                self.default_ns = default_ns;
                self.bindings.truncate(bindings);
            }
        }
        self.depth -= 1;
    }

    /// Runs `f` on `el`'s content, closes it, and prefixes errors with its name.
    #[inline]
    pub(super) fn within<T>(
        &mut self,
        el: El<'a>,
        f: impl FnOnce(&mut Self, &El<'a>) -> R<T>,
    ) -> R<T> {
        let r = f(self, &el);
        self.close(&el);
        r.map_err(|mut e| {
            e.push_parent(el.local);
            e
        })
    }

    /// The next child element of `parent`, or `None` at its end tag. White space between
    /// children is skipped; other text is an error.
    #[inline]
    pub(super) fn child(&mut self, parent: &El<'a>) -> R<Option<El<'a>>> {
        if parent.empty {
            return Ok(None);
        }
        loop {
            self.lx.skip_ws();
            if self.lx.try_end(parent.name) {
                return Ok(None);
            }
            match self.lx.next()? {
                Tok::Start {
                    name,
                    attrs,
                    empty,
                    at,
                } => return self.open(name, attrs, empty, at).map(Some),
                Tok::End { name, at } => {
                    if name == parent.name {
                        return Ok(None);
                    }
                    return Err(ParseError::MismatchedTag {
                        path: String::new(),
                        expected: parent.name.to_owned(),
                        found: name.to_owned(),
                        offset: at,
                    }
                    .into());
                }
                Tok::Text { raw, at, .. } => {
                    if !is_ws(raw) {
                        return Err(unexpected_text(at));
                    }
                }
                Tok::CData { .. } => return Err(unexpected_text(self.lx.pos())),
                Tok::Eof => {
                    return Err(ParseError::UnexpectedEof {
                        path: String::new(),
                    }
                    .into())
                }
            }
        }
    }

    /// The text content of a leaf element.
    pub(super) fn text(&mut self, el: El<'a>) -> R<Text<'a>> {
        self.within(el, |p, el| {
            if el.empty {
                return Ok(Cow::Borrowed(""));
            }
            let mut acc: Option<Text<'a>> = None;
            loop {
                if p.lx.try_end(el.name) {
                    return Ok(acc.unwrap_or(Cow::Borrowed("")));
                }
                let piece = match p.lx.next()? {
                    Tok::Text { raw, plain, at } => text_value(raw, plain, at)?,
                    Tok::CData { raw, plain } => cdata_value(raw, plain),
                    Tok::End { name, at } => {
                        if name != el.name {
                            return Err(ParseError::MismatchedTag {
                                path: String::new(),
                                expected: el.name.to_owned(),
                                found: name.to_owned(),
                                offset: at,
                            }
                            .into());
                        }
                        return Ok(acc.unwrap_or(Cow::Borrowed("")));
                    }
                    Tok::Start {
                        name,
                        attrs,
                        empty,
                        at,
                    } => {
                        let child = p.open(name, attrs, empty, at)?;
                        return Err(unexpected(&child));
                    }
                    Tok::Eof => {
                        return Err(ParseError::UnexpectedEof {
                            path: String::new(),
                        }
                        .into())
                    }
                };
                match &mut acc {
                    None => acc = Some(piece),
                    Some(a) => a.to_mut().push_str(&piece),
                }
            }
        })
    }

    /// An element that must be empty (`Final`, `MoreData`, `NoResp`); white space is allowed.
    pub(super) fn flag(&mut self, el: El<'a>) -> R<()> {
        let at = el.at;
        let t = self.text(el)?;
        if is_ws(&t) {
            Ok(())
        } else {
            Err(unexpected_text(at))
        }
    }
}
