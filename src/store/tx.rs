//! Backend-neutral transactional logic: the multi-record updates written once, over a minimal
//! key-value transaction ([`Tx`]) that each backend implements, so every backend behaves alike.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{
    device_key, may_reenroll, normalize_upn, AuditEntry, Cancelled, CertRecord, CommandRecord,
    CommandState, Device, DeviceState, Enqueued, EnrollOutcome, EnrollRefusal, Owner, PreviousCert,
    RenewOutcome, Renewal, RenewalCommit, Round, RoundCommit, SessionIndex, StoreError, User,
    MAX_RENEWALS,
};

/// The key spaces of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Table {
    /// UPN → User.
    Users,
    /// DeviceID → Device.
    Devices,
    /// HWDevID → DeviceID.
    HwIndex,
    /// serial → CertRecord.
    Certs,
    /// serial → () for revoked certificates.
    Revoked,
    /// device \0 command_id → CommandRecord.
    Commands,
    /// device \0 seq (u64 big-endian) → command_id, for unanswered commands only.
    Queue,
    /// device \0 session_id → opaque session state.
    Sessions,
    /// id (u64 big-endian, monotonic) → AuditEntry.
    Audit,
    /// kind \0 key → a feature's record (see [`super::records`]).
    Records,
}

impl Table {
    /// Every table, for backends that open them by name.
    pub const ALL: [Table; 10] = [
        Table::Users,
        Table::Devices,
        Table::HwIndex,
        Table::Certs,
        Table::Revoked,
        Table::Commands,
        Table::Queue,
        Table::Sessions,
        Table::Audit,
        Table::Records,
    ];

    /// Stable on-disk name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::Devices => "devices",
            Table::HwIndex => "hw_index",
            Table::Certs => "certs",
            Table::Revoked => "revoked",
            Table::Commands => "commands",
            Table::Queue => "queue",
            Table::Sessions => "sessions",
            Table::Audit => "audit",
            Table::Records => "records",
        }
    }
}

/// A key-value transaction.
pub trait Tx {
    /// The backend's error (may carry a "retry" signal).
    type E;
    /// Reads a key.
    fn get(&self, t: Table, k: &[u8]) -> Result<Option<Vec<u8>>, Self::E>;
    /// Writes a key.
    fn insert(&self, t: Table, k: &[u8], v: Vec<u8>) -> Result<(), Self::E>;
    /// Deletes a key.
    fn remove(&self, t: Table, k: &[u8]) -> Result<(), Self::E>;
    /// Turns a logic error into the backend's abort error.
    fn abort(e: StoreError) -> Self::E;
}

/// JSON-encodes a record.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Our records are plain structs of strings and numbers: serialisation cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// JSON-decodes a record.
pub fn decode<T: DeserializeOwned>(what: &'static str, b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt {
        what,
        reason: e.to_string(),
    })
}

fn get_json<T: DeserializeOwned, X: Tx>(
    tx: &X,
    t: Table,
    what: &'static str,
    k: &[u8],
) -> Result<Option<T>, X::E> {
    match tx.get(t, k)? {
        None => Ok(None),
        Some(b) => decode(what, &b).map(Some).map_err(X::abort),
    }
}

/// Revokes `serial` inside `tx`; returns whether it was newly revoked.
pub fn revoke<X: Tx>(tx: &X, serial: &str, reason: &str, now: i64) -> Result<bool, X::E> {
    let Some(mut rec) =
        get_json::<CertRecord, X>(tx, Table::Certs, "certificate", serial.as_bytes())?
    else {
        return Ok(false);
    };
    if rec.revoked_at.is_some() {
        return Ok(false);
    }
    rec.revoked_at = Some(now);
    rec.revoke_reason = Some(reason.to_string());
    tx.insert(Table::Certs, serial.as_bytes(), encode(&rec))?;
    tx.insert(Table::Revoked, serial.as_bytes(), Vec::new())?;
    Ok(true)
}

/// Record kind of the per-user index of owned devices: [`super::User::id`] → DeviceIDs (a
/// hint, pruned at each enrollment of that owner: entries whose record is gone, unenrolled or
/// owned by someone else drop out, so deletions and transfers need not maintain it).
pub const OWNED_DEVICES: &str = "owned_devices";

/// The [`OWNED_DEVICES`] key of a device's owner, when its enrollments are counted against the
/// per-user cap: user-owned, not bulk (bulk accounts and Entra apps enroll fleets).
fn owned_index_key(d: &Device) -> Option<Vec<u8>> {
    match (&d.owner, d.bulk) {
        (Some(Owner::User { user_id }), false) => {
            Some(super::records::record_key(OWNED_DEVICES, user_id))
        }
        _ => None,
    }
}

/// See [`super::DeviceStore::record_enrollment`].
pub fn record_enrollment<X: Tx>(
    tx: &X,
    device: &Device,
    cert: &CertRecord,
    now: i64,
    max_owned: Option<usize>,
) -> Result<EnrollOutcome, X::E> {
    let mut out = EnrollOutcome::default();
    let id = device.device_id.as_bytes();
    let mut old: Vec<Device> = Vec::new();
    // Everything is checked before anything is written: a refusal leaves the store untouched.
    if let Some(d) = get_json::<Device, X>(tx, Table::Devices, "device", id)? {
        if !may_reenroll(&d, device) {
            out.refused = Some(EnrollRefusal::OwnedByAnother { owner: d.owner });
            return Ok(out);
        }
        old.push(d);
    }
    // The HWDevID is a claim: it replaces another DeviceID's record only when the same
    // principal owns both (a reset or re-join of its own device), never another's.
    let mut take_hw_index = true;
    if let Some(hw) = &device.hw_dev_id {
        if let Some(other) = tx.get(Table::HwIndex, hw.as_bytes())? {
            if other != id {
                if let Some(d) = get_json::<Device, X>(tx, Table::Devices, "device", &other)? {
                    if d.owner.is_some() && d.owner == device.owner {
                        old.push(d);
                    } else {
                        take_hw_index = false;
                    }
                }
            }
        }
    }
    let owned = match owned_index_key(device) {
        None => None,
        Some(key) => {
            let listed: Vec<String> = match tx.get(Table::Records, &key)? {
                Some(b) => decode("owned devices", &b).map_err(X::abort)?,
                None => Vec::new(),
            };
            let mut kept = Vec::new();
            for other in listed {
                if other == device.device_id || old.iter().any(|d| d.device_id == other) {
                    continue;
                }
                let live = get_json::<Device, X>(tx, Table::Devices, "device", other.as_bytes())?
                    .is_some_and(|d| d.state == DeviceState::Enrolled && d.owner == device.owner);
                if live && !kept.contains(&other) {
                    kept.push(other);
                }
            }
            if let Some(limit) = max_owned.filter(|l| kept.len() >= *l) {
                out.refused = Some(EnrollRefusal::TooManyDevices { limit });
                return Ok(out);
            }
            kept.push(device.device_id.clone());
            Some((key, kept))
        }
    };
    let mut events = Vec::new();
    for mut d in old {
        if d.cert_serial != cert.serial
            && revoke(tx, &d.cert_serial, "superseded by re-enrollment", now)?
        {
            out.revoked.push(d.cert_serial.clone());
        }
        if let Some(p) = d.previous_cert.take() {
            if revoke(tx, &p.serial, "superseded by re-enrollment", now)? {
                out.revoked.push(p.serial);
            }
        }
        if let Some(hw) = &d.hw_dev_id {
            if tx.get(Table::HwIndex, hw.as_bytes())?.as_deref() == Some(d.device_id.as_bytes()) {
                tx.remove(Table::HwIndex, hw.as_bytes())?;
            }
        }
        if d.device_id != device.device_id {
            d.state = DeviceState::Unenrolled;
            tx.insert(Table::Devices, d.device_id.as_bytes(), encode(&d))?;
            events.push(super::outbox::device_unenrolled(
                &d,
                "replaced",
                Some(&device.device_id),
            ));
        }
        out.replaced.push(d.device_id);
    }
    tx.insert(Table::Certs, cert.serial.as_bytes(), encode(cert))?;
    tx.insert(Table::Devices, id, encode(device))?;
    if let (Some(hw), true) = (&device.hw_dev_id, take_hw_index) {
        tx.insert(Table::HwIndex, hw.as_bytes(), id.to_vec())?;
    }
    if let Some((key, list)) = owned {
        tx.insert(Table::Records, &key, encode(&list))?;
    }
    // A new enrollment starts its SessionIDs again: nothing may be answered from the old ones.
    drop_device_sessions(tx, &device.device_id)?;
    events.push(super::outbox::device_enrolled(device, cert, &out.replaced));
    super::outbox::append_if_enabled(tx, &events, now)?;
    Ok(out)
}

/// See [`super::DeviceStore::record_renewal`].
pub fn record_renewal<X: Tx>(tx: &X, r: &RenewalCommit, now: i64) -> Result<RenewOutcome, X::E> {
    let id = r.device_id.as_bytes();
    let Some(mut d) = get_json::<Device, X>(tx, Table::Devices, "device", id)? else {
        return Ok(RenewOutcome::Stale);
    };
    let presented = get_json::<CertRecord, X>(
        tx,
        Table::Certs,
        "certificate",
        r.presented_serial.as_bytes(),
    )?;
    if d.state != DeviceState::Enrolled
        || presented.is_none_or(|c| c.revoked_at.is_some() || c.device_id != r.device_id)
    {
        return Ok(RenewOutcome::Stale);
    }
    let mut revoked = Vec::new();
    if d.cert_serial == r.presented_serial {
        // The usual case: the current certificate is replaced and stays accepted for a while.
        // An older one still in its grace period goes now: the device holds the newer one.
        if let Some(p) = d.previous_cert.take() {
            if revoke(
                tx,
                &p.serial,
                "superseded: renewed with a newer certificate",
                now,
            )? {
                revoked.push(p.serial);
            }
        }
        d.previous_cert = Some(PreviousCert {
            serial: std::mem::take(&mut d.cert_serial),
            thumbprint: std::mem::take(&mut d.cert_thumbprint),
            not_after: d.cert_not_after,
            grace_until: r.grace_until,
        });
    } else if d
        .previous_cert
        .as_ref()
        .is_some_and(|p| p.serial == r.presented_serial)
    {
        // The device renews again with the certificate it had: it never installed the one the
        // last renewal issued, which is retired unused. The grace period is not extended.
        if revoke(
            tx,
            &d.cert_serial,
            "never used: renewed again from the previous certificate",
            now,
        )? {
            revoked.push(d.cert_serial.clone());
        }
    } else {
        return Ok(RenewOutcome::Stale);
    }
    d.cert_serial = r.cert.serial.clone();
    d.cert_thumbprint = r.cert.thumbprint.clone();
    d.cert_not_after = r.cert.not_after;
    d.renewals.push(Renewal {
        at: now,
        old_serial: r.presented_serial.clone(),
        new_serial: r.cert.serial.clone(),
        new_not_after: r.cert.not_after,
    });
    if d.renewals.len() > MAX_RENEWALS {
        let extra = d.renewals.len() - MAX_RENEWALS;
        d.renewals.drain(..extra);
    }
    tx.insert(Table::Certs, r.cert.serial.as_bytes(), encode(&r.cert))?;
    tx.insert(Table::Devices, id, encode(&d))?;
    super::outbox::append_if_enabled(
        tx,
        &[super::outbox::certificate_renewed(
            &r.device_id,
            &r.presented_serial,
            &r.cert,
            &revoked,
        )],
        now,
    )?;
    Ok(RenewOutcome::Renewed {
        device: Box::new(d),
        revoked,
    })
}

/// Keys and values, in key order.
pub type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Read access outside a transaction, for the list operations every backend shares.
pub trait KvRead {
    /// Reads a key.
    fn get(&self, t: Table, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every (key, value) whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, t: Table, prefix: &[u8]) -> Result<KvPairs, StoreError>;
    /// Up to `limit` (key, value) pairs of `t` with keys strictly after `after` (from the
    /// start when `None`), in key order.
    fn scan_after(
        &self,
        t: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KvPairs, StoreError>;
}

fn queue_key(device_id: &str, seq: u64) -> Vec<u8> {
    device_key(device_id, &seq.to_be_bytes())
}

fn command_key(device_id: &str, command_id: &str) -> Vec<u8> {
    device_key(device_id, command_id.as_bytes())
}

/// Changes made together in one transaction: cancels, new commands (their `seq` set by the
/// store), record operations. What a reconciliation step writes for a chunk of devices.
#[derive(Debug, Default)]
pub struct ChangeSet {
    /// (device, command id) to cancel if still unanswered.
    pub cancels: Vec<(String, String)>,
    /// Commands to queue.
    pub commands: Vec<CommandRecord>,
    /// Record operations (`Expect`s, if any, must all hold or nothing is written).
    pub ops: Vec<super::RecordOp>,
}

/// What [`apply_changes`] did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Commands cancelled (the others were unknown or already final).
    pub cancelled: usize,
    /// One result per command, in order.
    pub enqueued: Vec<Enqueued>,
}

/// Applies `c` in `tx` (the commands' `seq` already set); `None` (nothing written) if a
/// record `Expect` did not hold.
pub fn apply_changes<X: Tx>(tx: &X, c: &ChangeSet, now: i64) -> Result<Option<Applied>, X::E> {
    if !super::records::apply_in_tx(tx, &c.ops)? {
        return Ok(None);
    }
    let cancelled = cancel_many(tx, &c.cancels, now)?;
    let enqueued = c
        .commands
        .iter()
        .map(|cmd| enqueue(tx, cmd))
        .collect::<Result<_, _>>()?;
    Ok(Some(Applied {
        cancelled,
        enqueued,
    }))
}

/// Why a device does not take a command queued for many devices at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such device.
    NotFound,
    /// The device is not enrolled (wiped, retired, unenrolled).
    NotEnrolled,
    /// A `./User/` command for a bulk-enrolled device (device scope only).
    DeviceScopeOnly,
}

/// The fields of a device record a bulk enqueue checks, decoded without the rest.
#[derive(serde::Deserialize)]
struct DeviceGate {
    state: super::DeviceState,
    #[serde(default)]
    bulk: bool,
}

/// Queues `cmd` (its `seq` already set) if its device exists, is enrolled, and is not a bulk
/// device when `cmd` is user-scoped: checked in the enqueue's own transaction, so a device
/// deleted meanwhile cannot get a command; see [`super::CommandQueue::enqueue_gated_many`].
pub fn enqueue_gated<X: Tx>(
    tx: &X,
    cmd: &CommandRecord,
) -> Result<Result<Enqueued, Refusal>, X::E> {
    let Some(g) =
        get_json::<DeviceGate, X>(tx, Table::Devices, "device", cmd.device_id.as_bytes())?
    else {
        return Ok(Err(Refusal::NotFound));
    };
    if g.state != super::DeviceState::Enrolled {
        return Ok(Err(Refusal::NotEnrolled));
    }
    if g.bulk && cmd.user_scoped {
        return Ok(Err(Refusal::DeviceScopeOnly));
    }
    enqueue(tx, cmd).map(Ok)
}

/// Queues a command whose `seq` is already set; see [`super::CommandQueue::enqueue`].
pub fn enqueue<X: Tx>(tx: &X, cmd: &CommandRecord) -> Result<Enqueued, X::E> {
    let key = command_key(&cmd.device_id, &cmd.command_id);
    if let Some(existing) = get_json::<CommandRecord, X>(tx, Table::Commands, "command", &key)? {
        return Ok(Enqueued::Existing(existing));
    }
    tx.insert(Table::Commands, &key, encode(cmd))?;
    tx.insert(
        Table::Queue,
        &queue_key(&cmd.device_id, cmd.seq),
        cmd.command_id.as_bytes().to_vec(),
    )?;
    Ok(Enqueued::Created(cmd.clone()))
}

/// Stores a command's new state; a final state leaves the queue (the record stays as history)
/// and enters the history sweep's index ([`super::finished`]).
pub fn put_command<X: Tx>(tx: &X, cmd: &CommandRecord) -> Result<(), X::E> {
    tx.insert(
        Table::Commands,
        &command_key(&cmd.device_id, &cmd.command_id),
        encode(cmd),
    )?;
    if let Some(entry) = super::finished::key_of(cmd) {
        tx.remove(Table::Queue, &queue_key(&cmd.device_id, cmd.seq))?;
        tx.insert(
            Table::Records,
            &super::records::record_key(super::finished::KIND, &entry),
            Vec::new(),
        )?;
    }
    Ok(())
}

/// See [`super::CommandQueue::cancel`].
pub fn cancel<X: Tx>(
    tx: &X,
    device_id: &str,
    command_id: &str,
    now: i64,
) -> Result<Cancelled, X::E> {
    let key = command_key(device_id, command_id);
    let Some(mut cmd) = get_json::<CommandRecord, X>(tx, Table::Commands, "command", &key)? else {
        return Ok(Cancelled::NotFound);
    };
    if cmd.state.is_terminal() {
        return Ok(Cancelled::AlreadyFinal(cmd.state));
    }
    cmd.state = CommandState::Cancelled;
    cmd.completed_at = Some(now);
    put_command(tx, &cmd)?;
    Ok(Cancelled::Cancelled)
}

/// Cancels each unanswered command of `ids` (device, command id) inside `tx`; returns how many
/// were cancelled (unknown and final ones are left alone).
pub fn cancel_many<X: Tx>(tx: &X, ids: &[(String, String)], now: i64) -> Result<usize, X::E> {
    let mut n = 0;
    for (device_id, command_id) in ids {
        if cancel(tx, device_id, command_id, now)? == Cancelled::Cancelled {
            n += 1;
        }
    }
    Ok(n)
}

/// The (device, command id) pairs of a device's unanswered commands, for [`cancel_many`].
pub fn queued_ids<R: KvRead>(r: &R, device_id: &str) -> Result<Vec<(String, String)>, StoreError> {
    Ok(queued(r, device_id)?
        .into_iter()
        .map(|c| (c.device_id, c.command_id))
        .collect())
}

/// Key of a device's [`SessionIndex`]: the empty SessionID (a device cannot use it).
pub fn session_index_key(device_id: &str) -> Vec<u8> {
    device_key(device_id, b"")
}

/// Drops every stored session of `device_id` and bumps its index generation, so a round that
/// read the old sessions cannot commit. Used when the device enrolls again: a new enrollment
/// starts its SessionIDs again at 1 and must never be answered from the old ones.
pub fn drop_device_sessions<X: Tx>(tx: &X, device_id: &str) -> Result<(), X::E> {
    let key = session_index_key(device_id);
    let Some(index) = get_json::<SessionIndex, X>(tx, Table::Sessions, "session index", &key)?
    else {
        return Ok(());
    };
    for (sid, _) in &index.sessions {
        tx.remove(Table::Sessions, &device_key(device_id, sid.as_bytes()))?;
    }
    let fresh = SessionIndex {
        generation: index.generation + 1,
        ..SessionIndex::default()
    };
    tx.insert(Table::Sessions, &key, encode(&fresh))
}

/// The state of a stored command, all [`commit_round`] checks (the group commit applies rounds
/// one after another: decoding only this field skips the rest of the record).
#[derive(serde::Deserialize)]
struct StateOf {
    state: CommandState,
}

/// The certificate fields of a stored device, which a round keeps from the store (a renewal may
/// have changed them since the round read the device); the rest of the record is not decoded.
#[derive(serde::Deserialize)]
struct CertOf {
    cert_serial: String,
    cert_thumbprint: String,
    cert_not_after: i64,
    #[serde(default)]
    previous_cert: Option<super::PreviousCert>,
    #[serde(default)]
    renewals: Vec<super::Renewal>,
}

/// See [`super::SessionStore::commit_round`].
///
/// Everything is read and checked before anything is written (a check that fails must leave
/// the transaction empty). Checks: the device's session index is still at the generation the
/// round read ([`RoundGuard`]), and each command listed in [`Round::read_states`] is still in
/// the state the round read it in — so a round never writes back a command record that another
/// round or an admin changed since (a cancelled command stays cancelled, a command answered in
/// one session is not reset to `pending` by another).
///
/// The device's certificate binding (`cert_*`, `previous_cert`, `renewals`) belongs to
/// enrollment and renewal: a round keeps the stored one, so a session that loaded the device
/// before a concurrent renewal cannot undo it. The only change a round makes to it is retiring
/// the previous certificate, by listing its serial in [`Round::revoke`].
pub fn commit_round<X: Tx>(tx: &X, round: &Round, now: i64) -> Result<RoundCommit, X::E> {
    if let Some(g) = &round.guard {
        let key = session_index_key(&g.device_id);
        let stored = get_json::<SessionIndex, X>(tx, Table::Sessions, "session index", &key)?
            .map_or(0, |i| i.generation);
        if stored != g.generation {
            return Ok(RoundCommit::Conflict);
        }
    }
    for c in &round.commands {
        let Some((_, seen)) = round.read_states.iter().find(|(id, _)| *id == c.command_id) else {
            continue;
        };
        let key = command_key(&c.device_id, &c.command_id);
        let stored = get_json::<StateOf, X>(tx, Table::Commands, "command", &key)?;
        if stored.map(|s| s.state) != Some(*seen) {
            return Ok(RoundCommit::Conflict);
        }
    }
    if let Some(d) = &round.device {
        let mut d = d.clone();
        let id = d.device_id.clone();
        if let Some(stored) = get_json::<CertOf, X>(tx, Table::Devices, "device", id.as_bytes())? {
            d.cert_serial = stored.cert_serial;
            d.cert_thumbprint = stored.cert_thumbprint;
            d.cert_not_after = stored.cert_not_after;
            d.previous_cert = stored.previous_cert;
            d.renewals = stored.renewals;
        }
        if d.previous_cert
            .as_ref()
            .is_some_and(|p| round.revoke.iter().any(|(s, _)| *s == p.serial))
        {
            d.previous_cert = None;
        }
        tx.insert(Table::Devices, id.as_bytes(), encode(&d))?;
    }
    for c in &round.commands {
        put_command(tx, c)?;
    }
    if let Some((device, session, state)) = &round.session {
        let k = device_key(device, session.as_bytes());
        match state {
            Some(bytes) => tx.insert(Table::Sessions, &k, bytes.clone())?,
            None => tx.remove(Table::Sessions, &k)?,
        }
    }
    if let Some(g) = &round.guard {
        for sid in &g.drop {
            tx.remove(Table::Sessions, &device_key(&g.device_id, sid.as_bytes()))?;
        }
        let mut index = g.index.clone();
        index.generation = g.generation + 1;
        tx.insert(
            Table::Sessions,
            &session_index_key(&g.device_id),
            encode(&index),
        )?;
    }
    for (serial, reason) in &round.revoke {
        revoke(tx, serial, reason, now)?;
    }
    super::outbox::append_if_enabled(tx, &round.events, now)?;
    Ok(RoundCommit::Committed)
}

/// Every command of a device in queue order.
pub fn list_commands(r: &impl KvRead, device_id: &str) -> Result<Vec<CommandRecord>, StoreError> {
    let mut v: Vec<CommandRecord> = r
        .scan_prefix(Table::Commands, &device_key(device_id, b""))?
        .iter()
        .map(|(_, b)| decode("command", b))
        .collect::<Result<_, _>>()?;
    v.sort_by_key(|c| c.seq);
    Ok(v)
}

/// The unanswered commands of a device in queue order.
pub fn queued(r: &impl KvRead, device_id: &str) -> Result<Vec<CommandRecord>, StoreError> {
    let mut out = Vec::new();
    for (_, id) in r.scan_prefix(Table::Queue, &device_key(device_id, b""))? {
        let id = String::from_utf8_lossy(&id);
        if let Some(b) = r.get(Table::Commands, &command_key(device_id, &id))? {
            out.push(decode::<CommandRecord>("command", &b)?);
        }
    }
    Ok(out)
}

/// One command.
pub fn get_command(
    r: &impl KvRead,
    device_id: &str,
    command_id: &str,
) -> Result<Option<CommandRecord>, StoreError> {
    r.get(Table::Commands, &command_key(device_id, command_id))?
        .map(|b| decode("command", &b))
        .transpose()
}

/// See [`super::UserStore::update_user`].
pub fn update_user<X: Tx>(tx: &X, user: &User) -> Result<bool, X::E> {
    let key = normalize_upn(&user.upn);
    let Some(stored) = get_json::<User, X>(tx, Table::Users, "user", key.as_bytes())? else {
        return Ok(false);
    };
    let mut user = user.clone();
    if !stored.id.is_empty() {
        user.id = stored.id; // immutable once set
    }
    tx.insert(Table::Users, key.as_bytes(), encode(&user))?;
    Ok(true)
}

/// See [`super::CommandQueue::scan_commands`].
pub fn scan_commands(
    r: &impl KvRead,
    after: Option<(&str, &str)>,
    limit: usize,
) -> Result<Vec<CommandRecord>, StoreError> {
    let after = after.map(|(d, c)| command_key(d, c));
    r.scan_after(Table::Commands, after.as_deref(), limit)?
        .iter()
        .map(|(_, v)| decode("command", v))
        .collect()
}

/// See [`super::CommandQueue::queue_stats`]: a paged walk of the queue index (unanswered
/// commands only), reading each command's record.
pub fn queue_stats(r: &impl KvRead, limit: usize) -> Result<super::QueueStats, StoreError> {
    const PAGE: usize = 1_000;
    let mut out = super::QueueStats::default();
    let mut after: Option<Vec<u8>> = None;
    let mut read = 0usize;
    loop {
        let want = PAGE.min(limit - read);
        if want == 0 {
            // Complete only if nothing is left.
            out.complete = r.scan_after(Table::Queue, after.as_deref(), 1)?.is_empty();
            return Ok(out);
        }
        let page = r.scan_after(Table::Queue, after.as_deref(), want)?;
        read += page.len();
        for (k, id) in &page {
            let device = k.split(|b| *b == 0).next().unwrap_or_default();
            let device = String::from_utf8_lossy(device);
            let id = String::from_utf8_lossy(id);
            if let Some(c) = get_command(r, &device, &id)? {
                if !c.state.is_terminal() {
                    out.add(&c.verb, c.state, c.created_at, 1);
                }
            }
        }
        if page.len() < want {
            out.complete = true;
            return Ok(out);
        }
        after = page.last().map(|(k, _)| k.clone());
    }
}

/// See [`super::CommandQueue::delete_finished`]: the state is read again inside the
/// transaction, so a command that is still unanswered is never deleted.
pub fn delete_finished<X: Tx>(tx: &X, ids: &[(String, String)]) -> Result<usize, X::E> {
    let mut n = 0;
    for (device_id, command_id) in ids {
        let key = command_key(device_id, command_id);
        let Some(cmd) = get_json::<CommandRecord, X>(tx, Table::Commands, "command", &key)? else {
            continue;
        };
        if let Some(entry) = super::finished::key_of(&cmd) {
            tx.remove(Table::Commands, &key)?;
            tx.remove(Table::Queue, &queue_key(device_id, cmd.seq))?;
            tx.remove(
                Table::Records,
                &super::records::record_key(super::finished::KIND, &entry),
            )?;
            n += 1;
        }
    }
    Ok(n)
}

/// See [`super::DeviceStore::delete_device`]. `queued` are the ids of the device's unanswered
/// commands and `sessions` the keys of its stored sessions, both read just before the
/// transaction (a key-value transaction cannot scan).
pub fn delete_device<X: Tx>(
    tx: &X,
    device_id: &str,
    queued: &[String],
    sessions: &[Vec<u8>],
    now: i64,
) -> Result<bool, X::E> {
    let Some(d) = get_json::<Device, X>(tx, Table::Devices, "device", device_id.as_bytes())? else {
        return Ok(false);
    };
    revoke(tx, &d.cert_serial, "device deleted by an admin", now)?;
    if let Some(p) = &d.previous_cert {
        revoke(tx, &p.serial, "device deleted by an admin", now)?;
    }
    if let Some(hw) = &d.hw_dev_id {
        if tx.get(Table::HwIndex, hw.as_bytes())?.as_deref() == Some(device_id.as_bytes()) {
            tx.remove(Table::HwIndex, hw.as_bytes())?;
        }
    }
    for id in queued {
        cancel(tx, device_id, id, now)?;
    }
    for k in sessions {
        tx.remove(Table::Sessions, k)?;
    }
    tx.remove(Table::Devices, device_id.as_bytes())?;
    if d.state == DeviceState::Enrolled {
        super::outbox::append_if_enabled(
            tx,
            &[super::outbox::device_unenrolled(&d, "deleted", None)],
            now,
        )?;
    }
    Ok(true)
}

/// What [`delete_device`] needs read before its transaction: (unanswered command ids, session keys).
pub fn device_leftovers(
    r: &impl KvRead,
    device_id: &str,
) -> Result<(Vec<String>, Vec<Vec<u8>>), StoreError> {
    let prefix = device_key(device_id, b"");
    let queued = r
        .scan_prefix(Table::Queue, &prefix)?
        .into_iter()
        .map(|(_, id)| String::from_utf8_lossy(&id).into_owned())
        .collect();
    let sessions = r
        .scan_prefix(Table::Sessions, &prefix)?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    Ok((queued, sessions))
}

/// Decodes audit entries from (key, value) pairs.
pub fn audit_entries(kv: KvPairs) -> Result<Vec<AuditEntry>, StoreError> {
    kv.iter().map(|(_, v)| decode("audit entry", v)).collect()
}

/// A store that takes raw records from another backend (a migration's target).
pub trait RawImport {
    /// Writes raw records into `t`, in one transaction.
    fn import(&self, t: Table, kv: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StoreError>;
    /// Records in `t`.
    fn count(&self, t: Table) -> Result<u64, StoreError>;
    /// Makes every id handed out later greater than `floor`.
    fn raise_ids_above(&self, floor: u64) -> Result<(), StoreError>;
}

/// What [`copy_all`] copied: records per table, and the largest id among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// (table, records), every table in [`Table::ALL`] order.
    pub tables: Vec<(Table, u64)>,
    /// The largest id (audit entry or queue position) copied.
    pub max_id: u64,
}

/// Why [`copy_all`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading or writing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// After the copy a table's count differs from the source's.
    #[error("verification failed: table {table} has {target} records in the target, {source_rows} in the source")]
    Mismatch {
        /// The table.
        table: &'static str,
        /// Records read from the source.
        source_rows: u64,
        /// Records counted in the target.
        target: u64,
    },
}

fn be_u64(b: &[u8]) -> Option<u64> {
    b.try_into().ok().map(u64::from_be_bytes)
}

/// The id a record holds that the store hands out itself (audit entry, queue position, command
/// sequence), or 0: what a copy must move the target's id counter above.
pub fn record_id(t: Table, k: &[u8], v: &[u8]) -> Result<u64, StoreError> {
    let id = match t {
        Table::Audit => be_u64(k),
        Table::Queue => k
            .iter()
            .position(|c| *c == 0)
            .and_then(|i| be_u64(&k[i + 1..])),
        Table::Commands => Some(decode::<CommandRecord>("command", v)?.seq),
        _ => None,
    };
    Ok(id.unwrap_or(0))
}

/// Copies every table of `from` into `to`, `page` records per transaction (both backends share
/// one encoding, so records go across as they are), moves `to`'s ids above every copied one and
/// checks each table's count.
pub fn copy_all(from: &dyn KvRead, to: &dyn RawImport, page: usize) -> Result<Copied, CopyError> {
    let mut tables = Vec::new();
    let mut max_id = 0u64;
    for t in Table::ALL {
        let mut n = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let kv = from.scan_after(t, after.as_deref(), page)?;
            let Some((last, _)) = kv.last() else {
                break;
            };
            after = Some(last.clone());
            for (k, v) in &kv {
                max_id = max_id.max(record_id(t, k, v)?);
            }
            to.import(t, &kv)?;
            n += kv.len() as u64;
            if kv.len() < page {
                break;
            }
        }
        tables.push((t, n));
    }
    to.raise_ids_above(max_id)?;
    for (t, n) in &tables {
        let target = to.count(*t)?;
        if target != *n {
            return Err(CopyError::Mismatch {
                table: t.name(),
                source_rows: *n,
                target,
            });
        }
    }
    Ok(Copied { tables, max_id })
}
