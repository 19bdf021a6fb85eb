//! The persisted state of one OMA-DM management session (MS-MDM §3; OMA-DM 1.2 §8), stored by
//! (DeviceID, SessionID) through `SessionStore` so a restart, or another node, continues it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the server remembers between the messages of one session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    /// The device's last `MsgID` processed.
    pub last_client_msg: u32,
    /// Our last `MsgID` sent.
    pub server_msg: u32,
    /// Next `CmdID` we hand out (unique within the session, hence within each message).
    pub next_cmd_id: u32,
    /// Our CmdIDs still waiting for a Status → the queued command they carry.
    pub outstanding: BTreeMap<String, Outstanding>,
    /// A large object the device is sending in chunks (`MoreData`).
    pub chunked: Option<Chunked>,
    /// Our last reply, re-sent verbatim if the device retransmits the same `MsgID`.
    pub last_reply: Option<String>,
    /// A command whose data we are sending in chunks (server → device large object).
    #[serde(default)]
    pub sending: Option<Sending>,
    /// The `MaxMsgSize` the device announced in this session: it holds for the rest of the
    /// session unless announced again (OMA SyncML MetaInfo 1.2.2 §5.2.9).
    #[serde(default)]
    pub max_msg_size: Option<u32>,
}

/// A large object being sent to the device, one chunk per message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sending {
    /// The queued command.
    pub command_id: String,
    /// Bytes of the item's data already sent.
    pub offset: usize,
}

/// One sent CmdID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outstanding {
    /// The queued command.
    pub command_id: String,
    /// `true` for the command itself, `false` for a command nested in its Atomic/Sequence.
    pub primary: bool,
}

/// A large object being received (OMA RepPro §7: every chunk but the last has `MoreData`, the
/// first declares the total in `Meta/Size`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunked {
    /// `Results`, `Replace` or `Add`.
    pub cmd: String,
    /// For `Results`: the `CmdRef` (our Get); a continuation must answer the same Get.
    pub cmd_ref: Option<String>,
    /// `Source/LocURI` of the item.
    pub source: Option<String>,
    /// `Meta/Format`.
    pub format: Option<String>,
    /// `Meta/Type`.
    pub ty: Option<String>,
    /// Declared total size in bytes.
    pub declared_size: Option<u64>,
    /// Data received so far.
    pub data: String,
}

impl SessionState {
    /// Hands out the next CmdID.
    pub fn next_id(&mut self) -> String {
        self.next_cmd_id += 1;
        self.next_cmd_id.to_string()
    }
}
