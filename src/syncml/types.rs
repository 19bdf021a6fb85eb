//! The SyncML message model (OMA SyncML RepPro 1.2.2 §5–6, OMA-DM 1.2.1, MS-MDM §2.2).
//!
//! Every text field is a [`Text`] (`Cow<'a, str>`): it borrows from the input when the XML held the
//! text verbatim (no entity or character reference, no CR), and owns the unescaped text otherwise.
//! Text is kept exactly as the peer meant it: entities are decoded, a CDATA section's content is
//! taken verbatim, line ends are normalised (`\r\n` → `\n`) as XML requires, and nothing is
//! trimmed.
//!
//! Numeric fields (`MsgID`, `CmdID`, `MsgRef`, `CmdRef`, `MaxMsgSize`, `Size`, …) stay the text the
//! peer sent, because peers are not always numeric (Fleet uses UUIDs as `CmdID`). A method with the
//! same name as the field parses it (`hdr.msg_id` is the text, `hdr.msg_id()` the number; `None`
//! when the text, after trimming ASCII white space, is not a decimal number in range).

use std::borrow::Cow;

pub use super::command::*;
pub use super::list::List;

/// Text borrowed from the input when possible, owned when it had to be unescaped.
pub type Text<'a> = Cow<'a, str>;

pub(crate) fn owned(t: Text<'_>) -> Text<'static> {
    Cow::Owned(t.into_owned())
}

pub(crate) fn owned_opt(t: Option<Text<'_>>) -> Option<Text<'static>> {
    t.map(owned)
}

/// Parses a decimal number, ignoring surrounding ASCII white space.
pub(crate) fn num<T: std::str::FromStr>(t: &str) -> Option<T> {
    let t = t.trim_matches(|c: char| c.is_ascii_whitespace());
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// A whole SyncML message: `<SyncML xmlns="SYNCML:SYNCML1.2">` = `SyncHdr`, `SyncBody`.
///
/// ```
/// let xml = br#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD>
///   <VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>1</MsgID>
///   <Target><LocURI>https://mdm.example/MDM.svc</LocURI></Target>
///   <Source><LocURI>DEVICE1</LocURI></Source></SyncHdr>
///   <SyncBody><Alert><CmdID>2</CmdID><Data>1201</Data></Alert><Final/></SyncBody></SyncML>"#;
/// let msg = winmdm::syncml::parse(xml)?;
/// assert_eq!(msg.hdr.msg_id(), Some(1));
/// assert!(msg.body.is_final);
/// let owned: winmdm::syncml::OwnedSyncMl = msg.into_owned();
/// # Ok::<(), winmdm::syncml::ParseError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SyncMl<'a> {
    /// `SyncHdr`.
    pub hdr: SyncHdr<'a>,
    /// `SyncBody`.
    pub body: SyncBody<'a>,
}

/// A message that owns all its text (for storage by the management layer).
pub type OwnedSyncMl = SyncMl<'static>;

impl SyncMl<'_> {
    /// Copies every borrowed text so the message outlives its input.
    pub fn into_owned(self) -> SyncMl<'static> {
        SyncMl {
            hdr: self.hdr.into_owned(),
            body: self.body.into_owned(),
        }
    }
}

/// `SyncHdr` (RepPro §5.2): `VerDTD, VerProto, SessionID, MsgID, Target, Source, RespURI?,
/// NoResp?, Cred?, Meta?`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SyncHdr<'a> {
    /// `VerDTD`, `1.2` for OMA-DM 1.2.
    pub ver_dtd: Text<'a>,
    /// `VerProto`, `DM/1.2`.
    pub ver_proto: Text<'a>,
    /// `SessionID`: chosen by the device, echoed by the server (decimal unless
    /// SyncApplicationVersion 2.0, hence text).
    pub session_id: Text<'a>,
    /// `MsgID`: each side numbers its own messages from 1 per session.
    pub msg_id: Text<'a>,
    /// `Target`: the server URL (device → server) or the DeviceID (server → device).
    pub target: Location<'a>,
    /// `Source`.
    pub source: Location<'a>,
    /// `RespURI`, where the next message should go.
    pub resp_uri: Option<Text<'a>>,
    /// `NoResp`: no `Status` is wanted for this message.
    pub no_resp: bool,
    /// `Cred`: in-band credentials (`syncml:auth-basic`, `syncml:auth-md5`).
    pub cred: Option<Cred<'a>>,
    /// `Meta` (`MaxMsgSize`, `MaxObjSize`). Windows ignores it in the server's header.
    pub meta: Option<Meta<'a>>,
}

impl SyncHdr<'_> {
    /// `MsgID` as a number.
    pub fn msg_id(&self) -> Option<u32> {
        num(&self.msg_id)
    }

    /// `SessionID` as a decimal number (see the field for why it may not be one).
    pub fn session_id(&self) -> Option<u32> {
        num(&self.session_id)
    }

    /// `Meta/MaxMsgSize` as a number.
    pub fn max_msg_size(&self) -> Option<u32> {
        self.meta.as_ref().and_then(Meta::max_msg_size)
    }

    /// Copies every borrowed text.
    pub fn into_owned(self) -> SyncHdr<'static> {
        SyncHdr {
            ver_dtd: owned(self.ver_dtd),
            ver_proto: owned(self.ver_proto),
            session_id: owned(self.session_id),
            msg_id: owned(self.msg_id),
            target: self.target.into_owned(),
            source: self.source.into_owned(),
            resp_uri: owned_opt(self.resp_uri),
            no_resp: self.no_resp,
            cred: self.cred.map(Cred::into_owned),
            meta: self.meta.map(Meta::into_owned),
        }
    }
}

/// `Target` / `Source` (RepPro §5.1.19, §5.1.23): `LocURI, LocName?`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Location<'a> {
    /// `LocURI`, e.g. `./DevDetail/SwV` or the DeviceID.
    pub loc_uri: Text<'a>,
    /// `LocName`, a display name.
    pub loc_name: Option<Text<'a>>,
}

impl<'a> Location<'a> {
    /// A location with only a `LocURI`.
    pub fn new(loc_uri: impl Into<Text<'a>>) -> Self {
        Location {
            loc_uri: loc_uri.into(),
            loc_name: None,
        }
    }

    /// Copies every borrowed text.
    pub fn into_owned(self) -> Location<'static> {
        Location {
            loc_uri: owned(self.loc_uri),
            loc_name: owned_opt(self.loc_name),
        }
    }
}

/// `Cred` (RepPro §5.1.4): `Meta?, Data`; `Meta/Type` is `syncml:auth-basic`, `syncml:auth-md5`…,
/// `Meta/Format` usually `b64`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Cred<'a> {
    /// `Meta` (`Type`, `Format`).
    pub meta: Option<Meta<'a>>,
    /// `Data`: the credential.
    pub data: Text<'a>,
}

impl Cred<'_> {
    /// Copies every borrowed text.
    pub fn into_owned(self) -> Cred<'static> {
        Cred {
            meta: self.meta.map(Meta::into_owned),
            data: owned(self.data),
        }
    }
}

/// `Chal` (RepPro §5.1.3): `Meta` with `Type`, `Format` and `NextNonce`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Chal<'a> {
    /// `Meta`.
    pub meta: Meta<'a>,
}

/// `Meta` (RepPro §5.1.12) with the Meta Information DTD (`syncml:metinf`) children this server
/// uses, in DTD order: `Format?, Type?, Mark?, Size?, Version?, NextNonce?, MaxMsgSize?,
/// MaxObjSize?`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Meta<'a> {
    /// `Format`: `chr` (default), `int`, `bool`, `b64`, `xml`, `node`, `null`, `bin`…
    pub format: Option<Text<'a>>,
    /// `Type`: a MIME type (`text/plain`) or an alert type (`com.microsoft/MDM/LoginStatus`).
    pub ty: Option<Text<'a>>,
    /// `Mark`.
    pub mark: Option<Text<'a>>,
    /// `Size`: the total size of a large object (first chunk only).
    pub size: Option<Text<'a>>,
    /// `Version`.
    pub version: Option<Text<'a>>,
    /// `NextNonce` (base64), for `syncml:auth-md5`.
    pub next_nonce: Option<Text<'a>>,
    /// `MaxMsgSize`.
    pub max_msg_size: Option<Text<'a>>,
    /// `MaxObjSize`.
    pub max_obj_size: Option<Text<'a>>,
}

impl Meta<'_> {
    /// `Size` as a number.
    pub fn size(&self) -> Option<u64> {
        self.size.as_deref().and_then(num)
    }

    /// `MaxMsgSize` as a number.
    pub fn max_msg_size(&self) -> Option<u32> {
        self.max_msg_size.as_deref().and_then(num)
    }

    /// `MaxObjSize` as a number.
    pub fn max_obj_size(&self) -> Option<u32> {
        self.max_obj_size.as_deref().and_then(num)
    }

    /// Copies every borrowed text.
    pub fn into_owned(self) -> Meta<'static> {
        Meta {
            format: owned_opt(self.format),
            ty: owned_opt(self.ty),
            mark: owned_opt(self.mark),
            size: owned_opt(self.size),
            version: owned_opt(self.version),
            next_nonce: owned_opt(self.next_nonce),
            max_msg_size: owned_opt(self.max_msg_size),
            max_obj_size: owned_opt(self.max_obj_size),
        }
    }
}

/// `Item` (RepPro §5.1.9): `Target?, Source?, Meta?, Data?, MoreData?`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Item<'a> {
    /// `Target` (the node a server command acts on).
    pub target: Option<Location<'a>>,
    /// `Source` (the node a device reports, e.g. in `Results` or package 1 `Replace`).
    pub source: Option<Location<'a>>,
    /// `Meta` (`Format`, `Type`, `Size`…).
    pub meta: Option<Meta<'a>>,
    /// `Data`, unescaped (an escaped `Format xml` payload comes out as the XML text).
    pub data: Option<Text<'a>>,
    /// `MoreData`: more chunks of this large object follow.
    pub more_data: bool,
}

impl Item<'_> {
    /// Copies every borrowed text.
    pub fn into_owned(self) -> Item<'static> {
        Item {
            target: self.target.map(Location::into_owned),
            source: self.source.map(Location::into_owned),
            meta: self.meta.map(Meta::into_owned),
            data: owned_opt(self.data),
            more_data: self.more_data,
        }
    }
}

/// `SyncBody` (RepPro §5.3): commands in document order, then `Final?`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SyncBody<'a> {
    /// The commands, in document order.
    pub commands: Vec<Command<'a>>,
    /// `<Final/>`: the last message of this package.
    pub is_final: bool,
}

impl SyncBody<'_> {
    /// Copies every borrowed text.
    pub fn into_owned(self) -> SyncBody<'static> {
        SyncBody {
            commands: self.commands.into_iter().map(Command::into_owned).collect(),
            is_final: self.is_final,
        }
    }
}
