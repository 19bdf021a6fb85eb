//! Persistence: the [`Store`] trait and its records.
//!
//! Everything the protocol flows must remember lives here — users, enrolled devices, every
//! certificate serial the CA issued and which of them are revoked — so that no protocol state
//! lives only in process memory and a restart (or, later, another node on a shared SQL backend)
//! continues where the last one stopped.
//!
//! The traits are split by capability ([`UserStore`], [`DeviceStore`], [`CertStore`]) and
//! mention no backend types. [`redb::RedbStore`] is the embedded default (group commit, every
//! acknowledged write `fdatasync`ed; [`embedded`] opens it and migrates an older
//! [`sled::SledStore`] once); [`mem::MemStore`] backs unit tests. Every implementation is run through the same battery
//! (`tests/store/`). All calls block; async callers use `spawn_blocking`.

use serde::{Deserialize, Serialize};

pub mod embedded;
pub mod finished;
pub mod mem;
pub mod outbox;
pub mod pg;
pub mod powercut;
pub mod records;
pub mod redb;
pub mod sled;
pub mod tx;

/// A user who may enroll devices (MS-MDE2 OnPremise authentication).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// User principal name, stored lower-case; the primary key.
    pub upn: String,
    /// Server-assigned, immutable, random id (set at creation; given at start-up to accounts
    /// created before ids existed). Devices name their owner by it, never by UPN, so an account
    /// created later with the same UPN owns none of the old account's devices.
    #[serde(default)]
    pub id: String,
    /// argon2id PHC string; never the password itself.
    pub password_hash: String,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// A disabled user cannot enroll.
    #[serde(default)]
    pub disabled: bool,
}

/// `user` as [`UserStore::create_user`] stores it: with a fresh random [`User::id`] unless it has
/// one.
pub fn with_id(user: &User) -> User {
    let mut u = user.clone();
    if u.id.is_empty() {
        u.id = crate::clock::random_hex(16);
    }
    u
}

/// Lifecycle state of a device record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// Enrolled with a valid certificate.
    #[default]
    Enrolled,
    /// Replaced by a later enrollment of the same hardware, or unenrolled.
    Unenrolled,
}

/// An enrolled device. `device_id` is the `DeviceID` AdditionalContext item, which is also the
/// CN of its certificate and the SyncML `Source/LocURI` of its sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The DeviceID (MS-MDE2 ContextItem `DeviceID`); the primary key.
    pub device_id: String,
    /// The hardware id (ContextItem `HWDevID`), if sent.
    pub hw_dev_id: Option<String>,
    /// The user who enrolled it (absent for device-only enrollments).
    pub upn: Option<String>,
    /// The principal that owns this enrollment: only it may enroll this DeviceID again
    /// (see `crate::owner`). `None` only on records written before owners existed whose user
    /// is gone.
    #[serde(default)]
    pub owner: Option<Owner>,
    /// `Full` (user) or `Device`.
    pub enrollment_type: String,
    /// ContextItem `DeviceType` (e.g. `CIMClient_Windows`).
    pub device_type: Option<String>,
    /// ContextItem `OSVersion`.
    pub os_version: Option<String>,
    /// ContextItem `OSEdition` (Windows product type number).
    pub os_edition: Option<String>,
    /// ContextItem `DeviceName`.
    pub device_name: Option<String>,
    /// ContextItem `ApplicationVersion`.
    pub application_version: Option<String>,
    /// ContextItem `Locale`.
    pub locale: Option<String>,
    /// ContextItem `MAC` values, de-duplicated, in order.
    pub macs: Vec<String>,
    /// ContextItem `NotInOobe`.
    pub not_in_oobe: Option<bool>,
    /// ContextItem `UXInitiated`.
    pub ux_initiated: Option<bool>,
    /// Serial (lower hex) of the current identity certificate.
    pub cert_serial: String,
    /// SHA-1 thumbprint (upper hex) of the current identity certificate.
    pub cert_thumbprint: String,
    /// Expiry of the current certificate (Unix seconds).
    pub cert_not_after: i64,
    /// When this enrollment happened (Unix seconds).
    pub enrolled_at: i64,
    /// Lifecycle state.
    pub state: DeviceState,
    /// Last `com.microsoft/MDM/LoginStatus` reported (`user`, `others`, `none`, `unknown`).
    #[serde(default)]
    pub login_status: Option<String>,
    /// Last management session (Unix seconds).
    #[serde(default)]
    pub last_seen: Option<i64>,
    /// Inventory reported by the device: `./DevInfo/*` and `./DevDetail/*` node → value.
    #[serde(default)]
    pub inventory: std::collections::BTreeMap<String, String>,
    /// Desired TenantLockdown `RequireNetworkInOOBE`, as last set by an admin.
    #[serde(default)]
    pub tenant_lockdown: Option<bool>,
    /// Generic (1226) alerts the device sent, most recent last (bounded).
    #[serde(default)]
    pub alerts: Vec<DeviceAlert>,
    /// Enrolled in bulk with a `windows-bulkenroll…` account (provisioning package): device-scope
    /// commands only.
    #[serde(default)]
    pub bulk: bool,
    /// The real user a bulk-enrolled device was assigned to, by whom and when.
    #[serde(default)]
    pub assigned_user: Option<Assignment>,
    /// Serial number of the registered Autopilot device this device was linked to (its
    /// `SMBIOSSerialNumber` matched); `Some` means it enrolled through Autopilot.
    #[serde(default)]
    pub autopilot_serial: Option<String>,
    /// Autopilot group tag, copied from the linked Autopilot device record.
    #[serde(default)]
    pub group_tag: Option<String>,
    /// The certificate the last renewal replaced, while it is still accepted (until the
    /// device's first session with the new one, or its grace period ends). See `mdm::renew`.
    #[serde(default)]
    pub previous_cert: Option<PreviousCert>,
    /// Certificate renewals (ROBO) of this enrollment, oldest first (bounded, see
    /// [`MAX_RENEWALS`]).
    #[serde(default)]
    pub renewals: Vec<Renewal>,
}

/// How many [`Renewal`] entries a device record keeps.
pub const MAX_RENEWALS: usize = 32;

/// The part of a [`Device`] that decides whether a certificate is its current one: what the
/// management endpoint's authentication reads on every request
/// ([`DeviceStore::get_device_binding`]), without the rest of the record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeviceBinding {
    /// Lifecycle state.
    pub state: DeviceState,
    /// Serial (lower hex) of the current identity certificate.
    pub cert_serial: String,
    /// The certificate the last renewal replaced, while it is still accepted.
    #[serde(default)]
    pub previous_cert: Option<PreviousCert>,
}

impl From<&Device> for DeviceBinding {
    fn from(d: &Device) -> DeviceBinding {
        DeviceBinding {
            state: d.state,
            cert_serial: d.cert_serial.clone(),
            previous_cert: d.previous_cert.clone(),
        }
    }
}

/// A certificate replaced by a renewal and not yet retired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousCert {
    /// Serial (lower hex).
    pub serial: String,
    /// SHA-1 thumbprint (upper hex).
    pub thumbprint: String,
    /// Its expiry (Unix seconds).
    pub not_after: i64,
    /// Accepted until this time (Unix seconds) unless the new certificate is used first.
    pub grace_until: i64,
}

/// One certificate renewal, as kept in [`Device::renewals`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewal {
    /// When (Unix seconds).
    pub at: i64,
    /// Serial of the certificate that authenticated the renewal.
    pub old_serial: String,
    /// Serial of the certificate issued.
    pub new_serial: String,
    /// Expiry of the new certificate (Unix seconds).
    pub new_not_after: i64,
}

/// A renewal to commit: see [`DeviceStore::record_renewal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalCommit {
    /// The device.
    pub device_id: String,
    /// Serial of the certificate that authenticated the renewal: the device's current one, or
    /// its still-accepted previous one (a device that never received or installed the
    /// certificate of an earlier renewal retries with the one it has).
    pub presented_serial: String,
    /// The new certificate.
    pub cert: CertRecord,
    /// Until when the certificate being replaced stays accepted (Unix seconds).
    pub grace_until: i64,
}

/// What [`DeviceStore::record_renewal`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewOutcome {
    /// Recorded. `revoked` lists serials retired by it (an earlier renewal's certificate the
    /// device never used, or an older previous certificate).
    Renewed {
        /// The device after the renewal.
        device: Box<Device>,
        /// Serials revoked in the same transaction.
        revoked: Vec<String>,
    },
    /// Nothing written: the device is gone, not enrolled, or `presented_serial` is neither its
    /// current nor its accepted previous certificate any more (changed since it was checked).
    Stale,
}

/// Who owns an enrollment: the principal whose credential enrolled it (or an admin's transfer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Owner {
    /// A user account (password, login page, Entra user token, bulk account), by
    /// [`User::id`], never by UPN.
    User {
        /// The account's [`User::id`].
        user_id: String,
    },
    /// A device-only Entra enrollment: the Entra application of a tenant (app-only token).
    EntraApp {
        /// `tid`.
        tenant: String,
        /// `appid`/`azp` of the token.
        app: String,
    },
}

/// Whether `newcomer` (an enrollment about to be recorded) may take over `existing`, the record
/// with the same DeviceID: only when the same principal enrolls it again (a reset, re-join or
/// Autopilot reset keeps working), or when the real user an admin assigned a bulk device to
/// enrolls it. A record without a known owner (its user was deleted) is taken by nobody: an admin
/// deletes or transfers it first. Pre-owner device-only records (no UPN, no owner) accept a
/// device-only (Entra app) enrollment, as before.
pub fn may_reenroll(existing: &Device, newcomer: &Device) -> bool {
    let Some(new) = &newcomer.owner else {
        return false;
    };
    if let (Some(a), Owner::User { user_id }) = (&existing.assigned_user, new) {
        if existing.bulk && !a.user_id.is_empty() && a.user_id == *user_id {
            return true;
        }
    }
    match &existing.owner {
        Some(o) => o == new,
        None => existing.upn.is_none() && matches!(new, Owner::EntraApp { .. }),
    }
}

/// A bulk-enrolled device's assignment to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The user.
    pub upn: String,
    /// Their [`User::id`] (empty on assignments made before ids existed).
    #[serde(default)]
    pub user_id: String,
    /// Who assigned it (admin token name).
    pub by: String,
    /// When (Unix seconds).
    pub at: i64,
}

/// Bulk-enrollment accounts are those whose UPN starts with this (the convention admins of the
/// system we replace use for provisioning packages).
pub const BULK_UPN_PREFIX: &str = "windows-bulkenroll";

/// Whether `upn` names a bulk-enrollment account.
pub fn is_bulk_account(upn: &str) -> bool {
    normalize_upn(upn).starts_with(BULK_UPN_PREFIX)
}

/// A generic alert (Alert 1226) a device reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAlert {
    /// `Meta/Type` (e.g. `com.microsoft:mdm.unenrollment.userrequest`).
    pub alert_type: Option<String>,
    /// `Source/LocURI`.
    pub source: Option<String>,
    /// `Data`.
    pub data: Option<String>,
    /// When it arrived (Unix seconds).
    pub at: i64,
}

/// Where a queued command is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    /// Waiting for the device's next session.
    #[default]
    Pending,
    /// Sent; no Status yet (or a `Get` answered 2xx whose Results have not arrived yet). Goes
    /// out again if the session ends without one.
    Sent,
    /// The device answered 2xx (200, or 202 accepted for asynchronous processing), every inner
    /// command of an `Atomic`/`Sequence` too, and a `Get` returned its Results.
    Done,
    /// The device answered 4xx/5xx (the code is kept), an inner command of an
    /// `Atomic`/`Sequence` failed (see [`CommandRecord::inner`]), or the server gave up on it
    /// (see [`CommandRecord::error`]: results lost, too large for the device).
    Failed,
    /// Cancelled by an admin before it was answered.
    Cancelled,
    /// The device answered 214 (operation cancelled: nothing more was processed in that
    /// session). Not applied as far as the server knows.
    CancelledByDevice,
    /// The device answered 215 (not executed: the user declined).
    NotExecuted,
    /// The device answered 216 (inside a failed Atomic, rolled back).
    RolledBack,
}

impl CommandState {
    /// Whether the command will never be sent again.
    pub fn is_terminal(self) -> bool {
        !matches!(self, CommandState::Pending | CommandState::Sent)
    }

    /// The state a device's Status code puts a command in (OMA RepPro §10): 214, 215 and 216
    /// have their own states, any other 2xx is `Done`, everything else `Failed`.
    pub fn of_status(code: Option<u16>) -> CommandState {
        match code {
            Some(214) => CommandState::CancelledByDevice,
            Some(215) => CommandState::NotExecuted,
            Some(216) => CommandState::RolledBack,
            Some(c) if (200..300).contains(&c) && c != 213 => CommandState::Done,
            _ => CommandState::Failed,
        }
    }
}

/// The device's answer to one command nested in an `Atomic` or `Sequence` (its CmdID as last
/// sent, its verb and LocURIs, and the code; `None` until the Status arrives).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InnerStatus {
    /// CmdID it was sent with (in the last session that sent it).
    pub cmd_id: String,
    /// `Add`, `Replace`, `Delete`, `Exec`, `Get`, `Atomic` or `Sequence`.
    pub verb: String,
    /// Its target LocURIs.
    pub targets: Vec<String>,
    /// The device's Status code.
    pub status: Option<u16>,
}

impl InnerStatus {
    /// Whether the device answered it with anything but plain success.
    pub fn failed(&self) -> bool {
        self.status
            .is_some_and(|c| CommandState::of_status(Some(c)) != CommandState::Done)
    }
}

/// One item of a `Results` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultItem {
    /// `Source/LocURI` of the node.
    pub target: Option<String>,
    /// `Meta/Format`.
    pub format: Option<String>,
    /// `Meta/Type`.
    #[serde(rename = "type")]
    pub ty: Option<String>,
    /// `Data`.
    pub data: Option<String>,
}

/// A command queued for one device (after nanomdm: body stored once by id, ordered per device).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// Client-chosen or generated id, unique per device.
    pub command_id: String,
    /// The device it is for.
    pub device_id: String,
    /// Queue position (assigned by the store at enqueue).
    pub seq: u64,
    /// `Get`, `Add`, `Replace`, `Delete`, `Exec`, `Atomic` or `Sequence`.
    pub verb: String,
    /// First target LocURI, for display.
    pub target: Option<String>,
    /// The command as a SyncML fragment; CmdIDs are assigned when it is sent.
    pub syncml: String,
    /// Targets `./User/...`: held until the device reports LoginStatus `user`.
    pub user_scoped: bool,
    /// Life-cycle state.
    pub state: CommandState,
    /// The device's SyncML status code for the command.
    pub status: Option<u16>,
    /// Results returned for a `Get`.
    pub results: Vec<ResultItem>,
    /// Enqueue time.
    pub created_at: i64,
    /// Last time it was sent.
    pub sent_at: Option<i64>,
    /// When the device answered.
    pub completed_at: Option<i64>,
    /// How many times it was sent.
    pub send_count: u32,
    /// For an `Atomic`/`Sequence`: every nested command and the device's code for it.
    #[serde(default)]
    pub inner: Vec<InnerStatus>,
    /// Why the server failed it although the device did not (results lost, too large).
    #[serde(default)]
    pub error: Option<String>,
    /// Results were cut at the per-command bound (count or bytes).
    #[serde(default)]
    pub results_truncated: bool,
}

impl CommandRecord {
    /// When the command reached its final state (its enqueue time if it never recorded one);
    /// `None` while it is unanswered.
    pub fn finished_at(&self) -> Option<i64> {
        self.state
            .is_terminal()
            .then(|| self.completed_at.unwrap_or(self.created_at))
    }
}

/// Outcome of an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued now.
    Created(CommandRecord),
    /// A command with that id already existed for the device; nothing was queued.
    Existing(CommandRecord),
}

/// Outcome of a cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// It was pending (or sent without answer) and is now cancelled.
    Cancelled,
    /// No such command.
    NotFound,
    /// Already answered or cancelled.
    AlreadyFinal(CommandState),
}

/// Everything one management round changes, written in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Round {
    /// The device record after the round.
    pub device: Option<Device>,
    /// Commands whose state changed.
    pub commands: Vec<CommandRecord>,
    /// Session state to store (`Some(bytes)`) or drop (`None`), by (device, session id).
    pub session: Option<(String, String, Option<Vec<u8>>)>,
    /// Certificates to revoke (serial, reason).
    pub revoke: Vec<(String, String)>,
    /// The state each of `commands` was in when the round read it: the transaction writes a
    /// command only if it is still in that state (an admin's cancel, or another round, in
    /// between makes the round a [`RoundCommit::Conflict`]). Commands not listed are written
    /// unchecked.
    pub read_states: Vec<(String, CommandState)>,
    /// The device's session index as the round read it and as it leaves it; see [`RoundGuard`].
    pub guard: Option<RoundGuard>,
    /// Webhook events the round causes, appended to the outbox in the same transaction (when
    /// recording is on, see [`outbox`]).
    pub events: Vec<outbox::NewEvent>,
    /// The round records nothing a device or an admin would miss if a crash took it: no
    /// command sent or answered, no certificate revoked, no webhook event, no change to the
    /// device but its last-seen time (an empty check-in; the device repeats its inventory in
    /// every session). The embedded store may then commit it without waiting for the disk (it is
    /// made durable by the next durable commit, within [`LAZY_SYNC_EVERY`]); other stores wait
    /// as for any round.
    pub lazy_sync: bool,
}

/// How long a lazy round (see [`Round::lazy_sync`]) may stay off the disk.
pub const LAZY_SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A node's loop that makes lazy rounds durable: every [`LAZY_SYNC_EVERY`], and once more when
/// `stop` turns true (so a clean shutdown leaves nothing off the disk).
pub async fn sync_lazy_loop(
    store: std::sync::Arc<dyn Store>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(LAZY_SYNC_EVERY) => false,
            _ = stop.changed() => true,
        } || *stop.borrow();
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.sync_lazy()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "store: making lazy rounds durable failed; retried")
            }
            Err(e) => tracing::error!(error = %e, "store: the lazy-round sync panicked"),
        }
        if stopping {
            return;
        }
    }
}

/// Optimistic concurrency for one device's management rounds: the round read the device's
/// [`SessionIndex`] at `generation`; the commit succeeds only if it is still at that generation,
/// and writes `index` at `generation + 1`, dropping the stored sessions named in `drop`.
///
/// On the embedded store (one node) rounds of one device are also serialised by an in-process lock, so a
/// conflict only comes from a writer outside that lock. On a shared SQL backend the same check
/// is `UPDATE session_index SET generation = generation + 1 … WHERE device_id = $1 AND
/// generation = $2` (0 rows: conflict, retry the round), or the round takes `SELECT … FOR
/// UPDATE` on the device's index row first, which makes the check always pass.
#[derive(Debug, Clone, Default)]
pub struct RoundGuard {
    /// The device.
    pub device_id: String,
    /// Generation the round read (0: no index yet).
    pub generation: u64,
    /// The index to store (its `generation` is set by the commit).
    pub index: SessionIndex,
    /// SessionIDs whose stored state goes (expired, or beyond the per-device bound).
    pub drop: Vec<String>,
}

/// Outcome of [`SessionStore::commit_round`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundCommit {
    /// Written.
    Committed,
    /// Another writer changed what the round read; nothing was written. Run the round again.
    Conflict,
}

/// Per-device bookkeeping of management sessions, stored with the sessions (under the empty
/// SessionID, which no device can use): which sessions are stored (so enrollment and expiry can
/// drop them inside a transaction) and which one is the device's current session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionIndex {
    /// Bumped by every committed round (and by re-enrollment).
    pub generation: u64,
    /// The newest session the device started (package 1); older ones are wound down.
    pub current: Option<String>,
    /// Stored sessions: (SessionID, last round's time).
    pub sessions: Vec<(String, i64)>,
}

/// One certificate the CA issued. Every issued serial is recorded, revoked or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    /// Serial number, lower-case hex without separators; the primary key.
    pub serial: String,
    /// The device it was issued to.
    pub device_id: String,
    /// SHA-1 thumbprint, upper-case hex.
    pub thumbprint: String,
    /// Issue time (Unix seconds).
    pub issued_at: i64,
    /// Expiry (Unix seconds).
    pub not_after: i64,
    /// Revocation time, if revoked.
    pub revoked_at: Option<i64>,
    /// Why it was revoked.
    pub revoke_reason: Option<String>,
}

/// What [`DeviceStore::record_enrollment`] replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrollOutcome {
    /// Device records that were replaced (same DeviceID, or another DeviceID with the same
    /// HWDevID and the same owner).
    pub replaced: Vec<String>,
    /// Certificate serials revoked because their device record was replaced.
    pub revoked: Vec<String>,
    /// Set when nothing was written: why the enrollment is refused.
    pub refused: Option<EnrollRefusal>,
}

/// Why [`DeviceStore::record_enrollment`] refused an enrollment (nothing written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollRefusal {
    /// The DeviceID is enrolled by (or was last enrolled by) another principal.
    OwnedByAnother {
        /// The owner of the existing record (`None`: none known).
        owner: Option<Owner>,
    },
    /// The owner already has `limit` enrolled devices.
    TooManyDevices {
        /// The cap.
        limit: usize,
    },
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record already exists (e.g. creating a user twice).
    #[error("{what} already exists")]
    AlreadyExists {
        /// What kind of record.
        what: &'static str,
    },
    /// The backend failed (I/O, corruption, transaction conflict).
    #[error("storage backend error: {reason}")]
    Backend {
        /// The backend's own message.
        reason: String,
    },
    /// The store cannot be reached now (its database is down, restarting or failing over, or
    /// no connection came free in time): the operation did not happen, or its outcome is
    /// unknown (a connection lost while committing); the same request may succeed later.
    #[error("store unavailable: {reason}")]
    Unavailable {
        /// The backend's own message.
        reason: String,
    },
    /// A stored record could not be decoded.
    #[error("stored {what} record is corrupt: {reason}")]
    Corrupt {
        /// What kind of record.
        what: &'static str,
        /// The decoder's message.
        reason: String,
    },
}

impl StoreError {
    /// The store could not be reached or could not write (a database down, a failed sync): the
    /// request may succeed later, so peers are told to retry (503 + `Retry-After`), not that it
    /// failed for good.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::Backend { .. }
        )
    }
}

/// One admin change, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log (assigned by the store, increasing).
    pub id: u64,
    /// When (Unix seconds).
    pub at: i64,
    /// Who: the admin token's name (`bootstrap` for the bootstrap token).
    pub actor: String,
    /// What, e.g. `user.create`, `device.delete`, `device.action`.
    pub action: String,
    /// On what (UPN, DeviceID…).
    pub target: String,
    /// Details (never secrets).
    pub detail: serde_json::Value,
}

/// The append-only log of admin changes.
pub trait AuditStore: Send + Sync {
    /// Appends an entry; its `id` is assigned here (increasing) and returned.
    fn append_audit(&self, entry: AuditEntry) -> Result<u64, StoreError>;
    /// Entries with an id strictly greater than `after`, oldest first, at most `limit`.
    fn list_audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
}

/// Users who may enroll.
pub trait UserStore: Send + Sync {
    /// Creates a user (given a fresh [`User::id`] when it has none, see [`with_id`]);
    /// [`StoreError::AlreadyExists`] if the UPN is taken.
    fn create_user(&self, user: &User) -> Result<(), StoreError>;
    /// Looks a user up by (lower-case) UPN.
    fn get_user(&self, upn: &str) -> Result<Option<User>, StoreError>;
    /// All users, ordered by UPN.
    fn list_users(&self) -> Result<Vec<User>, StoreError>;
    /// Deletes a user; `false` if there was none.
    fn delete_user(&self, upn: &str) -> Result<bool, StoreError>;
    /// Replaces an existing user (password hash, disabled; its stored [`User::id`], once set,
    /// never changes); `false` if there is none.
    fn update_user(&self, user: &User) -> Result<bool, StoreError>;
}

/// Enrolled devices.
pub trait DeviceStore: Send + Sync {
    /// Looks a device up by DeviceID.
    fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError>;
    /// A device's certificate binding ([`DeviceBinding`]); a backend that can read it without
    /// decoding the whole record does.
    fn get_device_binding(&self, device_id: &str) -> Result<Option<DeviceBinding>, StoreError> {
        Ok(self
            .get_device(device_id)?
            .as_ref()
            .map(DeviceBinding::from))
    }
    /// Devices ordered by DeviceID, starting strictly after `after`, at most `limit`.
    fn list_devices(&self, after: Option<&str>, limit: usize) -> Result<Vec<Device>, StoreError>;
    /// Replaces a device record (inventory, state…).
    fn put_device(&self, device: &Device) -> Result<(), StoreError>;
    /// Atomically records a new enrollment: stores `cert`, stores `device` (replacing any record
    /// with the same DeviceID, and any other record with the same HWDevID *and the same
    /// [`Device::owner`]*, which becomes [`DeviceState::Unenrolled`]), and revokes the
    /// certificates of the replaced records (their current ones and any
    /// [`Device::previous_cert`]). Writes nothing and sets [`EnrollOutcome::refused`] when a
    /// record with the same DeviceID belongs to another owner (`crate::owner::may_reenroll`),
    /// or when `max_owned` is given and the owner already has that many other enrolled devices.
    fn record_enrollment(
        &self,
        device: &Device,
        cert: &CertRecord,
        now: i64,
        max_owned: Option<usize>,
    ) -> Result<EnrollOutcome, StoreError>;
    /// Atomically removes a device record, cancels its unanswered commands (their records stay
    /// as history), drops its stored sessions and revokes its current certificate (and its
    /// [`Device::previous_cert`]); `false` if there was no such device.
    fn delete_device(&self, device_id: &str, now: i64) -> Result<bool, StoreError>;
    /// Atomically records a certificate renewal: stores the new certificate, makes it the
    /// device's current one, keeps the replaced one as [`Device::previous_cert`] until
    /// `grace_until`, appends to [`Device::renewals`], and revokes what the renewal retires.
    fn record_renewal(&self, r: &RenewalCommit, now: i64) -> Result<RenewOutcome, StoreError>;
}

/// Certificates issued by the CA and their revocation state.
pub trait CertStore: Send + Sync {
    /// Looks a certificate up by serial.
    fn get_cert(&self, serial: &str) -> Result<Option<CertRecord>, StoreError>;
    /// Records an issued certificate (outside an enrollment, e.g. a renewal later).
    fn put_cert(&self, cert: &CertRecord) -> Result<(), StoreError>;
    /// Revokes a certificate; `false` if the serial is unknown. Revoking twice keeps the first time.
    fn revoke_cert(&self, serial: &str, reason: &str, now: i64) -> Result<bool, StoreError>;
    /// All revoked certificates (the revocation list the management endpoint consults).
    fn list_revoked(&self) -> Result<Vec<CertRecord>, StoreError>;
    /// Number of certificates ever issued.
    fn count_certs(&self) -> Result<u64, StoreError>;
}

/// Per-device command queues (ordered, persistent, at-least-once).
pub trait CommandQueue: Send + Sync {
    /// Queues `cmd` (its `seq` is assigned here) unless a command with the same id exists for
    /// the device, in which case that one is returned and nothing changes.
    fn enqueue(&self, cmd: CommandRecord) -> Result<Enqueued, StoreError>;
    /// Queues many commands (typically one per device) in one transaction and one flush; the
    /// same per-id rule as [`CommandQueue::enqueue`] applies to each.
    fn enqueue_many(&self, cmds: Vec<CommandRecord>) -> Result<Vec<Enqueued>, StoreError>;
    /// Applies cancels, new commands and record operations as one transaction (see
    /// [`tx::apply_changes`]); `None` if a record `Expect` did not hold (nothing written).
    fn apply_changes(&self, c: tx::ChangeSet, now: i64) -> Result<Option<tx::Applied>, StoreError>;
    /// As [`CommandQueue::enqueue_many`], each command only if its device exists, is enrolled
    /// and, for a user-scoped command, is not bulk-enrolled (checked in the same transaction);
    /// one result per command, in order.
    fn enqueue_gated_many(
        &self,
        cmds: Vec<CommandRecord>,
    ) -> Result<Vec<Result<Enqueued, tx::Refusal>>, StoreError>;
    /// One command.
    fn get_command(
        &self,
        device_id: &str,
        command_id: &str,
    ) -> Result<Option<CommandRecord>, StoreError>;
    /// Every command of a device (history included), in queue order.
    fn list_commands(&self, device_id: &str) -> Result<Vec<CommandRecord>, StoreError>;
    /// The unanswered commands (`Pending` and `Sent`) of a device, in queue order.
    fn queued(&self, device_id: &str) -> Result<Vec<CommandRecord>, StoreError>;
    /// Cancels one unanswered command.
    fn cancel(&self, device_id: &str, command_id: &str, now: i64) -> Result<Cancelled, StoreError>;
    /// Cancels many unanswered commands, (device, command id) each, as one transaction where
    /// the backend can; returns how many were cancelled (the others were unknown or final).
    fn cancel_many(&self, ids: &[(String, String)], now: i64) -> Result<usize, StoreError> {
        let mut n = 0;
        for (device_id, command_id) in ids {
            if self.cancel(device_id, command_id, now)? == Cancelled::Cancelled {
                n += 1;
            }
        }
        Ok(n)
    }
    /// Cancels every unanswered command of a device; returns how many.
    fn clear(&self, device_id: &str, now: i64) -> Result<usize, StoreError>;
    /// Up to `limit` commands of every device in (device, command id) order, starting after
    /// the (device, command id) `after`: a bounded-memory walk of the whole history.
    fn scan_commands(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError>;
    /// Deletes the listed (device, command id) commands that are answered or cancelled, in one
    /// transaction; an unanswered or unknown one is skipped. Returns how many were deleted.
    fn delete_finished(&self, ids: &[(String, String)]) -> Result<usize, StoreError>;
    /// Counts the unanswered commands (`Pending`, `Sent`) of every device by (verb, state),
    /// with the enqueue time of the oldest pending one, reading at most `limit` of them (the
    /// queue index, not the history; [`QueueStats::complete`] says whether all were read).
    fn queue_stats(&self, limit: usize) -> Result<QueueStats, StoreError>;
}

/// What [`CommandQueue::queue_stats`] counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// (verb as stored, state) → number of unanswered commands.
    pub counts: std::collections::BTreeMap<(String, CommandState), u64>,
    /// `created_at` of the oldest `Pending` command counted.
    pub oldest_pending: Option<i64>,
    /// Whether every unanswered command was counted (`false`: the limit stopped the count).
    pub complete: bool,
}

impl QueueStats {
    /// Counts one unanswered command.
    pub fn add(&mut self, verb: &str, state: CommandState, created_at: i64, n: u64) {
        *self.counts.entry((verb.to_string(), state)).or_default() += n;
        if state == CommandState::Pending {
            self.oldest_pending = Some(
                self.oldest_pending
                    .map_or(created_at, |o| o.min(created_at)),
            );
        }
    }
}

/// A store operation that completes later ([`SessionStore::commit_round_async`]).
pub type StoreFuture<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'static>>;

/// Management session state, stored as opaque bytes by (device, SessionID) so a restart — or
/// another node — continues a session.
pub trait SessionStore: Send + Sync {
    /// The stored state of a session. The empty SessionID holds the device's
    /// [`SessionIndex`] (JSON).
    fn get_session(&self, device_id: &str, session_id: &str)
        -> Result<Option<Vec<u8>>, StoreError>;
    /// Applies one management round atomically, or nothing of it when its
    /// [`Round::guard`] or [`Round::read_states`] no longer hold.
    fn commit_round(&self, round: &Round, now: i64) -> Result<RoundCommit, StoreError>;
    /// [`SessionStore::commit_round`] for a caller that waits without holding a thread. The
    /// default commits now, on the caller's thread, and returns the outcome ready; the embedded
    /// store hands the round to its committer thread and resolves once the commit covering it
    /// returned (so a round on an async worker never blocks it on the disk).
    fn commit_round_async(&self, round: Round, now: i64) -> StoreFuture<RoundCommit> {
        Box::pin(std::future::ready(self.commit_round(&round, now)))
    }
    /// Whether this store's reads are quick enough (memory, a local file's page cache) to run on
    /// an async worker thread: then a management round runs on its request's task and only its
    /// commit leaves it ([`SessionStore::commit_round_async`]); otherwise (PostgreSQL, where a
    /// read is a network round trip) the round runs on a blocking thread.
    fn reads_inline(&self) -> bool {
        false
    }
    /// Makes the rounds committed without waiting for the disk durable now; `Ok(true)` when
    /// there were some. Stores that wait for the disk on every commit have none.
    fn sync_lazy(&self) -> Result<bool, StoreError> {
        Ok(false)
    }
}

/// Everything the server needs from storage.
pub trait Store:
    UserStore
    + DeviceStore
    + CertStore
    + CommandQueue
    + SessionStore
    + AuditStore
    + RecordStore
    + Snapshots
{
    /// This store as its generic record table (for [`records::Kind`] helpers).
    fn records(&self) -> &dyn RecordStore;
}
impl<
        T: UserStore
            + DeviceStore
            + CertStore
            + CommandQueue
            + SessionStore
            + AuditStore
            + RecordStore
            + Snapshots,
    > Store for T
{
    fn records(&self) -> &dyn RecordStore {
        self
    }
}

pub use records::{RecordOp, RecordStore};

/// A consistent, read-only view of every table as of one instant, for backups.
pub trait Snapshots {
    /// The view (held open until dropped; writers go on meanwhile), or `None` when the backend
    /// is backed up with its own tools (PostgreSQL: `pg_dump`).
    fn snapshot(&self) -> Result<Option<Box<dyn tx::KvRead + '_>>, StoreError>;
}

/// Key of a per-device record: `device_id \0 rest`.
pub fn device_key(device_id: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(device_id.len() + 1 + rest.len());
    k.extend_from_slice(device_id.as_bytes());
    k.push(0);
    k.extend_from_slice(rest);
    k
}

/// Conditions on device records (all given ones must hold). Plain data, so a SQL backend can
/// translate it; [`filtered_devices`] applies it over [`DeviceStore::list_devices`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    /// Enrolled by this (normalised) UPN.
    pub upn: Option<String>,
    /// In this state.
    pub state: Option<DeviceState>,
    /// `DeviceType` equal to this (case-insensitive).
    pub device_type: Option<String>,
    /// `Full` or `Device` (case-insensitive).
    pub enrollment_type: Option<String>,
    /// `OSEdition` number.
    pub os_edition: Option<String>,
    /// Last seen strictly before this Unix time (never-seen devices match).
    pub last_seen_before: Option<i64>,
    /// Last seen at or after this Unix time.
    pub last_seen_after: Option<i64>,
    /// Lower-case text found in the DeviceID, device name, UPN, maker or model (the console's
    /// search box).
    pub text: Option<String>,
}

impl DeviceFilter {
    /// Whether `d` satisfies every condition.
    pub fn matches(&self, d: &Device) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref()
                .is_none_or(|w| have.is_some_and(|h| h.eq_ignore_ascii_case(w)))
        };
        eq(&self.upn, d.upn.as_deref())
            && self.state.is_none_or(|s| s == d.state)
            && eq(&self.device_type, d.device_type.as_deref())
            && eq(&self.enrollment_type, Some(&d.enrollment_type))
            && eq(&self.os_edition, d.os_edition.as_deref())
            && self
                .last_seen_before
                .is_none_or(|t| d.last_seen.is_none_or(|s| s < t))
            && self
                .last_seen_after
                .is_none_or(|t| d.last_seen.is_some_and(|s| s >= t))
            && self.text.as_deref().is_none_or(|t| text_matches(d, t))
    }
}

/// Whether `t` (lower-case) occurs in one of the device's searchable fields.
fn text_matches(d: &Device, t: &str) -> bool {
    let has = |v: &str| v.to_lowercase().contains(t);
    has(&d.device_id)
        || d.device_name.as_deref().is_some_and(has)
        || d.upn.as_deref().is_some_and(has)
        || [
            "./DevInfo/Mod",
            "./DevDetail/Ext/Microsoft/DeviceName",
            "./DevInfo/Man",
        ]
        .iter()
        .filter_map(|k| d.inventory.get(*k))
        .any(|v| has(v))
}

/// One page of devices matching `filter`, ordered by DeviceID, after the cursor `after`.
/// Examines at most `scan_budget` records; the returned cursor continues after the last record
/// examined (so a sparse filter gives short pages, never an unbounded scan). `None` at the end.
pub fn filtered_devices(
    store: &dyn DeviceStore,
    after: Option<&str>,
    limit: usize,
    filter: &DeviceFilter,
    scan_budget: usize,
) -> Result<(Vec<Device>, Option<String>), StoreError> {
    // Read what a dense filter needs first, then grow the reads for sparse ones.
    let mut chunk_len = limit.clamp(1, 4096);
    let mut out = Vec::with_capacity(limit.min(1024));
    let mut cursor = after.map(str::to_string);
    let mut scanned = 0;
    loop {
        let chunk = store.list_devices(cursor.as_deref(), chunk_len)?;
        let exhausted = chunk.len() < chunk_len;
        chunk_len = (chunk_len * 2).min(4096);
        for d in chunk {
            scanned += 1;
            cursor = Some(d.device_id.clone());
            if filter.matches(&d) {
                out.push(d);
                if out.len() == limit {
                    // More may follow; the next page starts after this one.
                    return Ok((out, cursor));
                }
            }
            if scanned >= scan_budget {
                return Ok((out, cursor));
            }
        }
        if exhausted {
            return Ok((out, None));
        }
    }
}

/// At most `max` bytes of `s`, cut at a character boundary: every string stored from a device
/// goes through this (or a check) so one record cannot grow without bound.
pub fn clip_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The key form of a UPN ([`crate::upn::fold`]: trimmed, NFKC, lower-case). UPNs from outside
/// are checked by [`crate::upn::parse`] before they are stored or looked up.
pub fn normalize_upn(upn: &str) -> String {
    crate::upn::fold(upn)
}
