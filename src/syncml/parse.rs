//! SyncML bytes → [`SyncMl`]. Pure, bounded by [`Limits`], errors carry the element path.
//!
//! # What is accepted
//!
//! * UTF-8 only (an optional BOM), an optional XML declaration at the start, comments, processing
//!   instructions and white space between elements. No `<!DOCTYPE` ([`ParseError::DoctypeForbidden`]),
//!   so no entity other than `&lt; &gt; &amp; &quot; &apos;` and character references.
//! * **Namespaces** are resolved (default `xmlns` and prefixes). SyncML elements must be in
//!   `SYNCML:SYNCML1.2` or in no namespace; `Meta` children may be in `syncml:metinf`, in
//!   `SYNCML:SYNCML1.2` (Windows sends `<Type>` inheriting the default) or in none. Any other
//!   namespace gives [`ParseError::ForeignNamespace`]; an undeclared prefix (the Fleet samples'
//!   `<A:Format>`) gives [`ParseError::UnboundPrefix`].
//! * **Unknown elements are rejected, never skipped**, at every level
//!   ([`ParseError::UnexpectedElement`]), as Windows answers an unknown element under `SyncBody`
//!   with 400. Attributes other than namespace declarations are ignored.
//! * Required children must be present ([`ParseError::MissingElement`]), single ones appear at most
//!   once ([`ParseError::DuplicateElement`]). The **order of children is not enforced** (Windows
//!   and admin profiles put `Meta` after `Data`, or before `Target`); the writer restores DTD
//!   order. The order of commands is kept.
//! * `CmdID` is required on every command of a full message, optional in fragments
//!   ([`parse_fragment`]), because admin profiles leave it to the server. It is never required to
//!   be numeric. Commands need at least one `Item` where the DTD says `Item+`; `Atomic` and
//!   `Sequence` need at least one command. `Final` must be the last child of `SyncBody`.
//! * A `Data` element holds text only (escaped XML or CDATA), not child elements.
//! * Modelled, hence accepted: the elements of [`SyncHdr`], [`Item`], the commands of [`Command`]
//!   and the `Meta` children of [`Meta`]. Elements of the DTD that Windows MDM does not use
//!   (`Map`, `Put`, `Search`, `Sync`, `Lang`, `Anchor`, `EMI`, `Mem`, `SourceParent`…) are
//!   rejected like unknown ones.
//! * Text is never trimmed: entities are decoded, a CDATA section's content is taken verbatim,
//!   line ends become `\n` (XML 1.0 §2.11), pieces split by comments are joined.

use std::borrow::Cow;

use super::error::{Limits, ParseError};
use super::lex::{attributes, cdata_value, is_ws, text_value, unescape_into, Lexer, Tok};
use super::types::*;

/// The SyncML namespace.
pub const SYNCML_NS: &str = "SYNCML:SYNCML1.2";
/// The Meta Information DTD namespace.
pub const METINF_NS: &str = "syncml:metinf";

/// Parses a whole SyncML message with the default [`Limits`].
///
/// ```
/// use winmdm::syncml::{parse, Command};
/// let msg = parse(br#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD>
///   <VerProto>DM/1.2</VerProto><SessionID>7</SessionID><MsgID>2</MsgID>
///   <Target><LocURI>https://mdm.example/MDM.svc</LocURI></Target>
///   <Source><LocURI>DEVICE1</LocURI></Source></SyncHdr><SyncBody>
///   <Results><CmdID>3</CmdID><MsgRef>1</MsgRef><CmdRef>5</CmdRef><Item>
///     <Source><LocURI>./DevDetail/SwV</LocURI></Source>
///     <Meta><Format xmlns="syncml:metinf">chr</Format></Meta><Data>10.0.19043</Data>
///   </Item></Results><Final/></SyncBody></SyncML>"#)?;
/// let Command::Results(r) = &msg.body.commands[0] else { panic!() };
/// assert_eq!(r.cmd_ref(), Some(5));
/// assert_eq!(r.items[0].data.as_deref(), Some("10.0.19043"));
/// # Ok::<(), winmdm::syncml::ParseError>(())
/// ```
pub fn parse(input: &[u8]) -> Result<SyncMl<'_>, ParseError> {
    parse_with_limits(input, &Limits::default())
}

/// Parses a whole SyncML message within `limits`.
pub fn parse_with_limits<'a>(input: &'a [u8], limits: &Limits) -> Result<SyncMl<'a>, ParseError> {
    message(input, limits).map_err(|e| *e)
}

fn message<'a>(input: &'a [u8], limits: &Limits) -> R<SyncMl<'a>> {
    let src = check_input(input, limits)?;
    let mut p = Parser::new(src, limits, false);
    let root = p.prolog()?;
    if !(root.local == "SyncML" && root.ns.is_syncml()) {
        return Err(ParseError::NotSyncMl {
            element: root.name.to_owned(),
        }
        .into());
    }
    let msg = p.within(root, Parser::syncml)?;
    p.epilog()?;
    Ok(msg)
}

/// Parses admin-supplied commands: one or more top-level commands (`Replace`, `Atomic` wrapping
/// others…), with or without namespaces, `CmdID` optional.
///
/// ```
/// use winmdm::syncml::{parse_fragment, Command};
/// let cmds = parse_fragment(br#"<Replace><CmdID>1</CmdID><Item>
///   <Target><LocURI>./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera</LocURI></Target>
///   <Meta><Format xmlns="syncml:metinf">int</Format></Meta><Data>0</Data></Item></Replace>"#)?;
/// assert_eq!(cmds.len(), 1);
/// assert!(matches!(cmds[0], Command::Replace(_)));
/// # Ok::<(), winmdm::syncml::ParseError>(())
/// ```
pub fn parse_fragment(input: &[u8]) -> Result<Vec<Command<'_>>, ParseError> {
    parse_fragment_with_limits(input, &Limits::default())
}

/// [`parse_fragment`] within `limits`.
pub fn parse_fragment_with_limits<'a>(
    input: &'a [u8],
    limits: &Limits,
) -> Result<Vec<Command<'a>>, ParseError> {
    fragment(input, limits).map_err(|e| *e)
}

fn fragment<'a>(input: &'a [u8], limits: &Limits) -> R<Vec<Command<'a>>> {
    let src = check_input(input, limits)?;
    let mut p = Parser::new(src, limits, true);
    let mut cmds = Vec::new();
    loop {
        match p.lx.next()? {
            Tok::Eof => break,
            Tok::Text { raw, at, .. } => {
                if !is_ws(raw) {
                    return Err(unexpected_text(at));
                }
            }
            Tok::CData { .. } => return Err(unexpected_text(p.lx.pos())),
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
                let el = p.open(name, attrs, empty, at)?;
                if let Some(el) = p.command(el, &mut cmds)? {
                    return Err(unexpected(&el));
                }
            }
        }
    }
    if cmds.is_empty() {
        return Err(ParseError::NoCommands.into());
    }
    Ok(cmds)
}

fn check_input<'a>(input: &'a [u8], limits: &Limits) -> R<&'a str> {
    if input.len() > limits.max_input_bytes {
        return Err(ParseError::InputTooLarge {
            len: input.len(),
            max: limits.max_input_bytes,
        }
        .into());
    }
    std::str::from_utf8(input).map_err(|e| {
        Box::new(ParseError::InvalidUtf8 {
            offset: e.valid_up_to(),
        })
    })
}

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
    saved_default: Ns<'a>,
    saved_bindings: usize,
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
}

pub(super) type R<T> = Result<T, Box<ParseError>>;

impl<'a, 'l> Parser<'a, 'l> {
    fn new(src: &'a str, limits: &'l Limits, fragment: bool) -> Self {
        Parser {
            lx: Lexer::new(src),
            limits,
            fragment,
            depth: 0,
            commands: 0,
            items: 0,
            default_ns: Ns::None,
            bindings: Vec::new(),
        }
    }

    /// Skips to the root element.
    fn prolog(&mut self) -> R<El<'a>> {
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
    fn epilog(&mut self) -> R<()> {
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
        let saved_default = self.default_ns;
        let saved_bindings = self.bindings.len();
        if !attrs.is_empty() {
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
            saved_default,
            saved_bindings,
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
        self.default_ns = el.saved_default;
        self.bindings.truncate(el.saved_bindings);
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
