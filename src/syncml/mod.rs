//! SyncML codec: OMA-DM 1.2 SyncML messages as Windows MDM uses them (MS-MDM, OMA SyncML RepPro
//! 1.2.2, PROTOCOL.md §6).
//!
//! Owns the message model ([`SyncMl`], [`Command`]…), the parser ([`parse()`], [`parse_fragment`]),
//! the writer ([`write()`], [`written_len`]) and [`StatusCode`]. It does no I/O, knows no session
//! state and imports only thiserror.
//!
//! * The model borrows text from the input ([`Text`] is a `Cow<str>`); [`SyncMl::into_owned`]
//!   detaches it for storage.
//! * The parser is a SyncML-specific XML scanner (not a general XML parser): bounded by
//!   [`Limits`], it rejects DTDs, unknown elements and malformed XML with a [`ParseError`] that
//!   carries the element path. See [`parse`](mod@parse) for exactly what it accepts.
//! * `parse(write(m)) == m` for every parsed `m`, and [`written_len`] is exact.
//!
//! ```
//! use winmdm::syncml::{parse, write, Command, StatusCode};
//! let input = br#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD>
//! <VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>2</MsgID>
//! <Target><LocURI>https://mdm.example/MDM.svc</LocURI></Target><Source><LocURI>DEV</LocURI></Source>
//! </SyncHdr><SyncBody><Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>5</CmdRef>
//! <Cmd>Replace</Cmd><Data>202</Data></Status><Final/></SyncBody></SyncML>"#;
//! let msg = parse(input)?;
//! let Command::Status(s) = &msg.body.commands[0] else { unreachable!() };
//! assert_eq!(s.code(), Some(StatusCode::ACCEPTED_FOR_PROCESSING));
//! let mut out = Vec::new();
//! write(&msg, &mut out);
//! assert_eq!(parse(&out)?, msg);
//! # Ok::<(), winmdm::syncml::ParseError>(())
//! ```

mod command;
mod error;
mod escape;
mod grammar;
mod grammar_cmd;
mod lex;
mod list;
pub mod parse;
mod reader;
mod scan;
mod status;
mod types;
mod write;

pub use error::{Limits, ParseError};
pub use parse::{
    parse, parse_fragment, parse_fragment_with_limits, parse_with_limits, METINF_NS, SYNCML_NS,
};
pub use status::StatusCode;
pub use types::{
    Alert, Chal, Command, Container, Cred, Item, ItemCommand, List, Location, Meta, OwnedSyncMl,
    Results, Status, SyncBody, SyncHdr, SyncMl, Text,
};
pub use write::{write, write_fragment, written_len};

#[doc(hidden)]
pub mod fuzzing {
    //! Entry points for `fuzz/` (not a stable API).

    use super::*;

    fn relaxed() -> Limits {
        Limits {
            max_input_bytes: usize::MAX,
            ..Limits::default()
        }
    }

    /// Properties: no panic; for input that parses, `parse(write(parse(x))) == parse(x)`, the
    /// writer is deterministic and `written_len` is exact. Same for fragments.
    pub fn roundtrip(data: &[u8]) {
        if let Ok(m) = parse(data) {
            let mut out = Vec::new();
            write(&m, &mut out);
            assert_eq!(out.len(), written_len(&m), "written_len is not exact");
            let n: usize = m.body.commands.iter().map(Command::written_len).sum();
            let envelope = SyncMl {
                hdr: m.hdr.clone(),
                body: SyncBody {
                    commands: Vec::new(),
                    is_final: m.body.is_final,
                },
            };
            assert_eq!(written_len(&envelope) + n, out.len(), "sizes do not add up");
            match parse_with_limits(&out, &relaxed()) {
                Ok(m2) => {
                    assert_eq!(m, m2, "round trip changed the message");
                    let mut out2 = Vec::new();
                    write(&m2, &mut out2);
                    assert_eq!(out, out2, "writer is not deterministic");
                }
                Err(e) => panic!("written message does not parse: {e}"),
            }
        }
        if let Ok(cmds) = parse_fragment(data) {
            let mut out = Vec::new();
            write_fragment(&cmds, &mut out);
            let n: usize = cmds.iter().map(Command::written_len).sum();
            assert_eq!(out.len(), n, "Command::written_len is not exact");
            match parse_fragment_with_limits(&out, &relaxed()) {
                Ok(c2) => assert_eq!(cmds, c2, "fragment round trip changed the commands"),
                Err(e) => panic!("written fragment does not parse: {e}"),
            }
        }
    }
}
