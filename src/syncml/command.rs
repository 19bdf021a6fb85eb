//! SyncBody commands (OMA SyncML RepPro 1.2.2 §6.6). See [`super::types`] for the text and
//! number conventions.

use super::status::StatusCode;
use super::types::{num, owned, owned_opt, Chal, Cred, Item, List, Meta, Text};

/// One SyncBody command (RepPro §6). `Map`, `Put`, `Search` and `Sync` are not used by Windows MDM
/// and are rejected by the parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `Alert` (1201 client session, 1224 LoginStatus, 1226 generic alert…).
    Alert(Alert<'a>),
    /// `Status`, the answer to one command (or to the `SyncHdr`).
    Status(Status<'a>),
    /// `Results`, the answer to a `Get`.
    Results(Results<'a>),
    /// `Get`.
    Get(ItemCommand<'a>),
    /// `Add` (implicitly adds parents).
    Add(ItemCommand<'a>),
    /// `Replace` (the node must exist).
    Replace(ItemCommand<'a>),
    /// `Delete` (a subtree).
    Delete(ItemCommand<'a>),
    /// `Exec`.
    Exec(ItemCommand<'a>),
    /// `Copy`.
    Copy(ItemCommand<'a>),
    /// `Atomic`: all-or-nothing.
    Atomic(Container<'a>),
    /// `Sequence`: in order.
    Sequence(Container<'a>),
}

impl<'a> Command<'a> {
    /// The element name (`"Replace"`…).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Alert(_) => "Alert",
            Command::Status(_) => "Status",
            Command::Results(_) => "Results",
            Command::Get(_) => "Get",
            Command::Add(_) => "Add",
            Command::Replace(_) => "Replace",
            Command::Delete(_) => "Delete",
            Command::Exec(_) => "Exec",
            Command::Copy(_) => "Copy",
            Command::Atomic(_) => "Atomic",
            Command::Sequence(_) => "Sequence",
        }
    }

    /// The `CmdID` text (`None` only in fragments that left it out).
    pub fn cmd_id(&self) -> Option<&str> {
        let id = match self {
            Command::Alert(c) => &c.cmd_id,
            Command::Status(c) => &c.cmd_id,
            Command::Results(c) => &c.cmd_id,
            Command::Get(c)
            | Command::Add(c)
            | Command::Replace(c)
            | Command::Delete(c)
            | Command::Exec(c)
            | Command::Copy(c) => &c.cmd_id,
            Command::Atomic(c) | Command::Sequence(c) => &c.cmd_id,
        };
        id.as_deref()
    }

    /// Sets the `CmdID` (the management layer numbers admin commands itself).
    pub fn set_cmd_id(&mut self, id: impl Into<Text<'a>>) {
        let id = Some(id.into());
        match self {
            Command::Alert(c) => c.cmd_id = id,
            Command::Status(c) => c.cmd_id = id,
            Command::Results(c) => c.cmd_id = id,
            Command::Get(c)
            | Command::Add(c)
            | Command::Replace(c)
            | Command::Delete(c)
            | Command::Exec(c)
            | Command::Copy(c) => c.cmd_id = id,
            Command::Atomic(c) | Command::Sequence(c) => c.cmd_id = id,
        }
    }

    /// The command's own items (empty for `Atomic` and `Sequence`).
    pub fn items(&self) -> &[Item<'a>] {
        match self {
            Command::Alert(c) => &c.items,
            Command::Status(c) => &c.items,
            Command::Results(c) => &c.items,
            Command::Get(c)
            | Command::Add(c)
            | Command::Replace(c)
            | Command::Delete(c)
            | Command::Exec(c)
            | Command::Copy(c) => &c.items,
            Command::Atomic(_) | Command::Sequence(_) => &[],
        }
    }

    /// Copies every borrowed text.
    pub fn into_owned(self) -> Command<'static> {
        match self {
            Command::Alert(c) => Command::Alert(c.into_owned()),
            Command::Status(c) => Command::Status(c.into_owned()),
            Command::Results(c) => Command::Results(c.into_owned()),
            Command::Get(c) => Command::Get(c.into_owned()),
            Command::Add(c) => Command::Add(c.into_owned()),
            Command::Replace(c) => Command::Replace(c.into_owned()),
            Command::Delete(c) => Command::Delete(c.into_owned()),
            Command::Exec(c) => Command::Exec(c.into_owned()),
            Command::Copy(c) => Command::Copy(c.into_owned()),
            Command::Atomic(c) => Command::Atomic(c.into_owned()),
            Command::Sequence(c) => Command::Sequence(c.into_owned()),
        }
    }
}

/// `Alert` (RepPro §6.6.2): `CmdID, NoResp?, Cred?, Data?, Correlator?, Item*`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Alert<'a> {
    /// `CmdID`.
    pub cmd_id: Option<Text<'a>>,
    /// `NoResp`.
    pub no_resp: bool,
    /// `Cred`.
    pub cred: Option<Cred<'a>>,
    /// `Data`: the alert code (`1201`, `1224`, `1226`…).
    pub data: Option<Text<'a>>,
    /// `Correlator` (answer to an asynchronous `Exec`).
    pub correlator: Option<Text<'a>>,
    /// `Item`s.
    pub items: List<Item<'a>>,
}

impl Alert<'_> {
    /// The alert code (`Data`) as a number.
    pub fn code(&self) -> Option<u16> {
        self.data.as_deref().and_then(num)
    }

    /// Copies every borrowed text.
    pub fn into_owned(self) -> Alert<'static> {
        Alert {
            cmd_id: owned_opt(self.cmd_id),
            no_resp: self.no_resp,
            cred: self.cred.map(Cred::into_owned),
            data: owned_opt(self.data),
            correlator: owned_opt(self.correlator),
            items: self.items.map(Item::into_owned),
        }
    }
}

/// `Status` (RepPro §6.6.17): `CmdID, MsgRef, CmdRef, Cmd, TargetRef*, SourceRef*, Cred?, Chal?,
/// Data, Item*`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Status<'a> {
    /// `CmdID`.
    pub cmd_id: Option<Text<'a>>,
    /// `MsgRef`: the `MsgID` of the message answered.
    pub msg_ref: Text<'a>,
    /// `CmdRef`: the `CmdID` answered (`0` for the `SyncHdr`). May be a UUID if the server used one.
    pub cmd_ref: Text<'a>,
    /// `Cmd`: the answered command's name (`SyncHdr`, `Alert`, `Replace`…).
    pub cmd: Text<'a>,
    /// `TargetRef`s.
    pub target_refs: List<Text<'a>>,
    /// `SourceRef`s.
    pub source_refs: List<Text<'a>>,
    /// `Cred`.
    pub cred: Option<Cred<'a>>,
    /// `Chal`: an authentication challenge.
    pub chal: Option<Chal<'a>>,
    /// `Data`: the status code.
    pub data: Text<'a>,
    /// `Item`s.
    pub items: List<Item<'a>>,
}

impl Status<'_> {
    /// The status code (`Data`).
    pub fn code(&self) -> Option<StatusCode> {
        num(&self.data).map(StatusCode)
    }

    /// `MsgRef` as a number.
    pub fn msg_ref(&self) -> Option<u32> {
        num(&self.msg_ref)
    }

    /// `CmdRef` as a number (`None` for a non-numeric `CmdID` such as a UUID).
    pub fn cmd_ref(&self) -> Option<u32> {
        num(&self.cmd_ref)
    }

    /// Copies every borrowed text.
    pub fn into_owned(self) -> Status<'static> {
        Status {
            cmd_id: owned_opt(self.cmd_id),
            msg_ref: owned(self.msg_ref),
            cmd_ref: owned(self.cmd_ref),
            cmd: owned(self.cmd),
            target_refs: self.target_refs.map(owned),
            source_refs: self.source_refs.map(owned),
            cred: self.cred.map(Cred::into_owned),
            chal: self.chal.map(|c| Chal {
                meta: c.meta.into_owned(),
            }),
            data: owned(self.data),
            items: self.items.map(Item::into_owned),
        }
    }
}

/// `Results` (RepPro §6.6.12): `CmdID, MsgRef?, CmdRef, Meta?, TargetRef*, SourceRef*, Item+`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Results<'a> {
    /// `CmdID`.
    pub cmd_id: Option<Text<'a>>,
    /// `MsgRef`.
    pub msg_ref: Option<Text<'a>>,
    /// `CmdRef`: the `Get` answered.
    pub cmd_ref: Text<'a>,
    /// `Meta`.
    pub meta: Option<Meta<'a>>,
    /// `TargetRef`s.
    pub target_refs: List<Text<'a>>,
    /// `SourceRef`s.
    pub source_refs: List<Text<'a>>,
    /// `Item`s.
    pub items: List<Item<'a>>,
}

impl Results<'_> {
    /// `MsgRef` as a number.
    pub fn msg_ref(&self) -> Option<u32> {
        self.msg_ref.as_deref().and_then(num)
    }

    /// `CmdRef` as a number.
    pub fn cmd_ref(&self) -> Option<u32> {
        num(&self.cmd_ref)
    }

    /// Copies every borrowed text.
    pub fn into_owned(self) -> Results<'static> {
        Results {
            cmd_id: owned_opt(self.cmd_id),
            msg_ref: owned_opt(self.msg_ref),
            cmd_ref: owned(self.cmd_ref),
            meta: self.meta.map(Meta::into_owned),
            target_refs: self.target_refs.map(owned),
            source_refs: self.source_refs.map(owned),
            items: self.items.map(Item::into_owned),
        }
    }
}

/// `Get`, `Add`, `Replace`, `Delete`, `Exec` and `Copy` (RepPro §6.6): `CmdID, NoResp?, Cred?,
/// Meta?, Correlator?, Item+`. `Correlator` is accepted by the parser in `Exec` only.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ItemCommand<'a> {
    /// `CmdID` (`None` only in an admin fragment that left it out).
    pub cmd_id: Option<Text<'a>>,
    /// `NoResp`.
    pub no_resp: bool,
    /// `Cred`.
    pub cred: Option<Cred<'a>>,
    /// `Meta`, applying to all items.
    pub meta: Option<Meta<'a>>,
    /// `Correlator` (`Exec` only).
    pub correlator: Option<Text<'a>>,
    /// `Item`s (at least one in parsed input).
    pub items: List<Item<'a>>,
}

impl<'a> ItemCommand<'a> {
    /// A command with a `CmdID` and items.
    pub fn new(cmd_id: impl Into<Text<'a>>, items: impl IntoIterator<Item = Item<'a>>) -> Self {
        ItemCommand {
            cmd_id: Some(cmd_id.into()),
            items: items.into_iter().collect(),
            ..ItemCommand::default()
        }
    }

    /// `CmdID` as a number.
    pub fn cmd_id(&self) -> Option<u32> {
        self.cmd_id.as_deref().and_then(num)
    }

    /// Copies every borrowed text.
    pub fn into_owned(self) -> ItemCommand<'static> {
        ItemCommand {
            cmd_id: owned_opt(self.cmd_id),
            no_resp: self.no_resp,
            cred: self.cred.map(Cred::into_owned),
            meta: self.meta.map(Meta::into_owned),
            correlator: owned_opt(self.correlator),
            items: self.items.map(Item::into_owned),
        }
    }
}

/// `Atomic` and `Sequence` (RepPro §6.6.4, §6.6.15): `CmdID, NoResp?, Meta?, commands+`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Container<'a> {
    /// `CmdID`.
    pub cmd_id: Option<Text<'a>>,
    /// `NoResp`.
    pub no_resp: bool,
    /// `Meta`.
    pub meta: Option<Meta<'a>>,
    /// The nested commands, in document order.
    pub commands: Vec<Command<'a>>,
}

impl Container<'_> {
    /// Copies every borrowed text.
    pub fn into_owned(self) -> Container<'static> {
        Container {
            cmd_id: owned_opt(self.cmd_id),
            no_resp: self.no_resp,
            meta: self.meta.map(Meta::into_owned),
            commands: self.commands.into_iter().map(Command::into_owned).collect(),
        }
    }
}
