//! The persisted state of one OMA-DM management session (MS-MDM §3; OMA-DM 1.2 §8), stored by
//! (DeviceID, SessionID) through `SessionStore` so a restart, or another node, continues it;
//! and the per-device serialisation of rounds.
//!
//! # Serialisation of a device's rounds
//!
//! A round is a read-modify-write of the device's record, its command queue and its sessions.
//! Two rounds of one device (two overlapping sessions, a network duplicate, a retry racing the
//! original) must not interleave, or one writes back what the other changed. Two layers:
//!
//! 1. In this process, [`lock_device`] holds one of [`ROUND_LOCK_STRIPES`] mutexes (chosen by
//!    the DeviceID's hash) for the whole round, so rounds of one device run one after another
//!    and rarely conflict. Different devices share a stripe only by hash collision. The mutexes
//!    are asynchronous: a round waiting for its stripe, or holding it while its commit waits for
//!    the disk, holds no thread.
//! 2. In the store, the round's commit is optimistic (`store::RoundGuard`): it succeeds only if
//!    the device's session index is still at the generation the round read, and every command
//!    it changes is still in the state it read; otherwise nothing is written and the round runs
//!    again from fresh reads, at most [`MAX_ROUND_ATTEMPTS`] times (then 503). This is what
//!    holds across nodes, and against admin writes (cancel) that do not take the lock.
//!
//! On PostgreSQL the first layer becomes `SELECT … FROM session_index WHERE device_id = $1 FOR
//! UPDATE` at the start of the round's transaction (the row lock serialises the device's rounds
//! across nodes); the second stays as a guard (`UPDATE … WHERE generation = $read`, and
//! `UPDATE commands … WHERE state = $read`, 0 rows → roll back and retry), which also makes
//! `SERIALIZABLE` with retries on serialisation failures a valid alternative to the row lock.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{Mutex, MutexGuard};

/// In-process lock stripes for [`lock_device`]. With 64 stripes and 64 devices checking in at
/// once, a round found its stripe held by another device's round (and waited for that round's
/// commit) more often than not.
pub const ROUND_LOCK_STRIPES: usize = 1024;
/// How many times a round is run when its commit conflicts.
pub const MAX_ROUND_ATTEMPTS: usize = 8;
/// A stored session not used for this long is dropped (its last reply with it: a retransmission
/// after that is refused, and a SessionID seen again after that starts afresh).
pub const SESSION_TTL_SECS: i64 = 30 * 60;
/// Sessions stored per device at most (the newest are kept).
pub const MAX_SESSIONS_PER_DEVICE: usize = 4;

static ROUND_LOCKS: [Mutex<()>; ROUND_LOCK_STRIPES] =
    [const { Mutex::const_new(()) }; ROUND_LOCK_STRIPES];
static ROUND_LOCKING: AtomicBool = AtomicBool::new(true);

/// Serialises the rounds of `device_id` in this process (layer 1 above). `None` when the lock
/// is switched off with [`set_round_lock`].
pub async fn lock_device(device_id: &str) -> Option<MutexGuard<'static, ()>> {
    if !ROUND_LOCKING.load(Ordering::Relaxed) {
        return None;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    device_id.hash(&mut h);
    let i = (h.finish() % ROUND_LOCK_STRIPES as u64) as usize;
    Some(ROUND_LOCKS[i].lock().await)
}

/// Switches the in-process round lock on or off (process-wide). Only for measuring what it
/// costs (`examples/loadgen --compare-round-lock`): without it, correctness rests on the
/// store's optimistic check and retries alone.
#[doc(hidden)]
pub fn set_round_lock(on: bool) {
    ROUND_LOCKING.store(on, Ordering::Relaxed);
}

/// Hex SHA-256 of a device message, to tell a retransmission (same bytes) from a new message
/// that reuses a MsgID.
pub fn message_digest(body: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

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
    /// Our last reply, re-sent verbatim if the device retransmits its last message.
    pub last_reply: Option<String>,
    /// [`message_digest`] of the device's last message: only a byte-identical copy is a
    /// retransmission.
    #[serde(default)]
    pub last_digest: Option<String>,
    /// [`message_digest`] of the device's package 1, to tell a late copy of it (refused) from a
    /// new package 1 reusing the SessionID (a new session).
    #[serde(default)]
    pub first_digest: Option<String>,
    /// The last reply ended the session (kept for a retransmission of the final message).
    #[serde(default)]
    pub ended: bool,
    /// `server_msg` when this session's package 1 arrived (a new package 1 reusing a stored
    /// SessionID continues its numbering): the session's own message count is the difference.
    #[serde(default)]
    pub first_server_msg: u32,
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
    /// Bytes of the item's data sent and acknowledged (213).
    pub offset: usize,
    /// The chunk sent last and not yet acknowledged: (its CmdID, where it ends, whether it is
    /// the last chunk). Only a 213 for that CmdID moves `offset` to its end, so a duplicated or
    /// stale 213 cannot skip data; only the last chunk's Status can complete the command.
    #[serde(default)]
    pub awaiting: Option<(String, usize, bool)>,
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
