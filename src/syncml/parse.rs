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

use super::error::{Limits, ParseError};
use super::reader::{Parser, R};
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
    let cmds = p.top_level_commands()?;
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
