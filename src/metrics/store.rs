//! [`MeteredStore`]: the store as the server uses it, every call timed and its failures counted
//! by operation, and command state transitions counted once their transaction committed. It
//! wraps any backend (redb, PostgreSQL, memory), so the figures mean the same on each.

use std::sync::Arc;
use std::time::Instant;

use super::{CmdFrom, CmdTo, EncodeLabelValue, LabelValueEncoder, Metrics};
use crate::store::tx::{Applied, ChangeSet, KvRead, Refusal};
use crate::store::{
    AuditEntry, AuditStore, Cancelled, CertRecord, CertStore, CommandQueue, CommandRecord,
    CommandState, Device, DeviceStore, Enqueued, EnrollOutcome, QueueStats, RecordOp, RecordStore,
    RenewOutcome, RenewalCommit, Round, RoundCommit, SessionStore, Snapshots, Store, StoreError,
    StoreFuture, User, UserStore,
};

macro_rules! ops {
    ($($v:ident => $s:literal,)+) => {
        /// A store operation (the trait method's name).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum StoreOp { $($v,)+ }
        impl StoreOp {
            /// Every operation, in declaration order.
            pub const ALL: &'static [StoreOp] = &[$(StoreOp::$v,)+];
            /// The label text.
            pub fn as_str(self) -> &'static str {
                match self { $(StoreOp::$v => $s,)+ }
            }
        }
        impl EncodeLabelValue for StoreOp {
            fn encode(&self, e: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(e, self.as_str())
            }
        }
    };
}

ops! {
    AppendAudit => "append_audit",
    ListAudit => "list_audit",
    CreateUser => "create_user",
    GetUser => "get_user",
    ListUsers => "list_users",
    DeleteUser => "delete_user",
    UpdateUser => "update_user",
    GetDevice => "get_device",
    GetDeviceBinding => "get_device_binding",
    ListDevices => "list_devices",
    PutDevice => "put_device",
    RecordEnrollment => "record_enrollment",
    DeleteDevice => "delete_device",
    RecordRenewal => "record_renewal",
    GetCert => "get_cert",
    PutCert => "put_cert",
    RevokeCert => "revoke_cert",
    ListRevoked => "list_revoked",
    CountCerts => "count_certs",
    Enqueue => "enqueue",
    EnqueueMany => "enqueue_many",
    EnqueueGatedMany => "enqueue_gated_many",
    ApplyChanges => "apply_changes",
    GetCommand => "get_command",
    ListCommands => "list_commands",
    Queued => "queued",
    Cancel => "cancel",
    CancelMany => "cancel_many",
    Clear => "clear",
    ScanCommands => "scan_commands",
    DeleteFinished => "delete_finished",
    QueueStats => "queue_stats",
    GetSession => "get_session",
    CommitRound => "commit_round",
    GetRecord => "get_record",
    ScanRecords => "scan_records",
    ApplyRecords => "apply_records",
    CheckReady => "check_ready",
}

/// A store whose every call is measured (see the [module docs](self)).
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    m: Arc<Metrics>,
}

impl std::fmt::Debug for MeteredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredStore").finish_non_exhaustive()
    }
}

impl MeteredStore {
    /// Wraps `inner`, recording into `m`.
    pub fn new(inner: Arc<dyn Store>, m: Arc<Metrics>) -> MeteredStore {
        MeteredStore { inner, m }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    #[inline]
    fn timed<R>(
        &self,
        op: StoreOp,
        f: impl FnOnce(&dyn Store) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        if !self.m.enabled() {
            return f(self.inner.as_ref());
        }
        let t = Instant::now();
        let r = f(self.inner.as_ref());
        self.m.store_op(op, t.elapsed(), r.as_ref().err());
        r
    }
}

impl AuditStore for MeteredStore {
    fn append_audit(&self, entry: AuditEntry) -> Result<u64, StoreError> {
        self.timed(StoreOp::AppendAudit, |s| s.append_audit(entry))
    }
    fn list_audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.timed(StoreOp::ListAudit, |s| s.list_audit(after, limit))
    }
}

impl UserStore for MeteredStore {
    fn create_user(&self, user: &User) -> Result<(), StoreError> {
        self.timed(StoreOp::CreateUser, |s| s.create_user(user))
    }
    fn get_user(&self, upn: &str) -> Result<Option<User>, StoreError> {
        self.timed(StoreOp::GetUser, |s| s.get_user(upn))
    }
    fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.timed(StoreOp::ListUsers, |s| s.list_users())
    }
    fn delete_user(&self, upn: &str) -> Result<bool, StoreError> {
        self.timed(StoreOp::DeleteUser, |s| s.delete_user(upn))
    }
    fn update_user(&self, user: &User) -> Result<bool, StoreError> {
        self.timed(StoreOp::UpdateUser, |s| s.update_user(user))
    }
}

impl DeviceStore for MeteredStore {
    fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError> {
        self.timed(StoreOp::GetDevice, |s| s.get_device(device_id))
    }
    fn get_device_binding(
        &self,
        device_id: &str,
    ) -> Result<Option<crate::store::DeviceBinding>, StoreError> {
        self.timed(StoreOp::GetDeviceBinding, |s| {
            s.get_device_binding(device_id)
        })
    }
    fn list_devices(&self, after: Option<&str>, limit: usize) -> Result<Vec<Device>, StoreError> {
        self.timed(StoreOp::ListDevices, |s| s.list_devices(after, limit))
    }
    fn put_device(&self, device: &Device) -> Result<(), StoreError> {
        self.timed(StoreOp::PutDevice, |s| s.put_device(device))
    }
    fn record_enrollment(
        &self,
        device: &Device,
        cert: &CertRecord,
        now: i64,
        max_owned: Option<usize>,
    ) -> Result<EnrollOutcome, StoreError> {
        self.timed(StoreOp::RecordEnrollment, |s| {
            s.record_enrollment(device, cert, now, max_owned)
        })
    }
    fn delete_device(&self, device_id: &str, now: i64) -> Result<bool, StoreError> {
        // Its unanswered commands are cancelled in the same transaction: count them (read just
        // before; a round committing in between may make the count off by its commands).
        let unanswered = if self.m.enabled() {
            self.inner.queued(device_id).map_or(0, |q| q.len() as u64)
        } else {
            0
        };
        let r = self.timed(StoreOp::DeleteDevice, |s| s.delete_device(device_id, now));
        if let Ok(true) = r {
            self.m
                .commands(CmdFrom::Unanswered, CmdTo::Cancelled, unanswered);
        }
        r
    }
    fn record_renewal(&self, r: &RenewalCommit, now: i64) -> Result<RenewOutcome, StoreError> {
        self.timed(StoreOp::RecordRenewal, |s| s.record_renewal(r, now))
    }
}

impl CertStore for MeteredStore {
    fn get_cert(&self, serial: &str) -> Result<Option<CertRecord>, StoreError> {
        self.timed(StoreOp::GetCert, |s| s.get_cert(serial))
    }
    fn put_cert(&self, cert: &CertRecord) -> Result<(), StoreError> {
        self.timed(StoreOp::PutCert, |s| s.put_cert(cert))
    }
    fn revoke_cert(&self, serial: &str, reason: &str, now: i64) -> Result<bool, StoreError> {
        self.timed(StoreOp::RevokeCert, |s| s.revoke_cert(serial, reason, now))
    }
    fn list_revoked(&self) -> Result<Vec<CertRecord>, StoreError> {
        self.timed(StoreOp::ListRevoked, |s| s.list_revoked())
    }
    fn count_certs(&self) -> Result<u64, StoreError> {
        self.timed(StoreOp::CountCerts, |s| s.count_certs())
    }
}

fn created(v: &[Enqueued]) -> u64 {
    v.iter()
        .filter(|e| matches!(e, Enqueued::Created(_)))
        .count() as u64
}

impl CommandQueue for MeteredStore {
    fn enqueue(&self, cmd: CommandRecord) -> Result<Enqueued, StoreError> {
        let r = self.timed(StoreOp::Enqueue, |s| s.enqueue(cmd));
        if let Ok(Enqueued::Created(_)) = &r {
            self.m.commands(CmdFrom::New, CmdTo::Pending, 1);
        }
        r
    }
    fn enqueue_many(&self, cmds: Vec<CommandRecord>) -> Result<Vec<Enqueued>, StoreError> {
        let r = self.timed(StoreOp::EnqueueMany, |s| s.enqueue_many(cmds));
        if let Ok(v) = &r {
            self.m.commands(CmdFrom::New, CmdTo::Pending, created(v));
        }
        r
    }
    fn enqueue_gated_many(
        &self,
        cmds: Vec<CommandRecord>,
    ) -> Result<Vec<Result<Enqueued, Refusal>>, StoreError> {
        let r = self.timed(StoreOp::EnqueueGatedMany, |s| s.enqueue_gated_many(cmds));
        if let Ok(v) = &r {
            let n = v
                .iter()
                .filter(|e| matches!(e, Ok(Enqueued::Created(_))))
                .count() as u64;
            self.m.commands(CmdFrom::New, CmdTo::Pending, n);
        }
        r
    }
    fn apply_changes(&self, c: ChangeSet, now: i64) -> Result<Option<Applied>, StoreError> {
        let r = self.timed(StoreOp::ApplyChanges, |s| s.apply_changes(c, now));
        if let Ok(Some(a)) = &r {
            self.m
                .commands(CmdFrom::New, CmdTo::Pending, created(&a.enqueued));
            self.m
                .commands(CmdFrom::Unanswered, CmdTo::Cancelled, a.cancelled as u64);
        }
        r
    }
    fn get_command(
        &self,
        device_id: &str,
        command_id: &str,
    ) -> Result<Option<CommandRecord>, StoreError> {
        self.timed(StoreOp::GetCommand, |s| {
            s.get_command(device_id, command_id)
        })
    }
    fn list_commands(&self, device_id: &str) -> Result<Vec<CommandRecord>, StoreError> {
        self.timed(StoreOp::ListCommands, |s| s.list_commands(device_id))
    }
    fn queued(&self, device_id: &str) -> Result<Vec<CommandRecord>, StoreError> {
        self.timed(StoreOp::Queued, |s| s.queued(device_id))
    }
    fn cancel(&self, device_id: &str, command_id: &str, now: i64) -> Result<Cancelled, StoreError> {
        let r = self.timed(StoreOp::Cancel, |s| s.cancel(device_id, command_id, now));
        if let Ok(Cancelled::Cancelled) = &r {
            self.m.commands(CmdFrom::Unanswered, CmdTo::Cancelled, 1);
        }
        r
    }
    fn cancel_many(&self, ids: &[(String, String)], now: i64) -> Result<usize, StoreError> {
        let r = self.timed(StoreOp::CancelMany, |s| s.cancel_many(ids, now));
        if let Ok(n) = &r {
            self.m
                .commands(CmdFrom::Unanswered, CmdTo::Cancelled, *n as u64);
        }
        r
    }
    fn clear(&self, device_id: &str, now: i64) -> Result<usize, StoreError> {
        let r = self.timed(StoreOp::Clear, |s| s.clear(device_id, now));
        if let Ok(n) = &r {
            self.m
                .commands(CmdFrom::Unanswered, CmdTo::Cancelled, *n as u64);
        }
        r
    }
    fn scan_commands(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        self.timed(StoreOp::ScanCommands, |s| s.scan_commands(after, limit))
    }
    fn delete_finished(&self, ids: &[(String, String)]) -> Result<usize, StoreError> {
        let r = self.timed(StoreOp::DeleteFinished, |s| s.delete_finished(ids));
        if let Ok(n) = &r {
            self.m
                .commands(CmdFrom::Answered, CmdTo::Deleted, *n as u64);
        }
        r
    }
    fn queue_stats(&self, limit: usize) -> Result<QueueStats, StoreError> {
        self.timed(StoreOp::QueueStats, |s| s.queue_stats(limit))
    }
}

impl Snapshots for MeteredStore {
    fn snapshot(&self) -> Result<Option<Box<dyn KvRead + '_>>, StoreError> {
        // Not timed: the snapshot borrows the inner store past the closure `timed` takes.
        self.inner.snapshot()
    }
}

/// The command state changes a round makes (from, to), counted once it committed.
fn transitions(round: &Round) -> Vec<(CommandState, CommandState)> {
    round
        .commands
        .iter()
        .filter_map(|c| {
            round
                .read_states
                .iter()
                .find(|(id, _)| *id == c.command_id)
                .map(|(_, from)| (*from, c.state))
        })
        .collect()
}

/// Counts `moves` ([`transitions`]) once the round committed.
fn committed(
    m: &Metrics,
    r: &Result<RoundCommit, StoreError>,
    moves: Option<Vec<(CommandState, CommandState)>>,
) {
    if let (Ok(RoundCommit::Committed), Some(moves)) = (r, moves) {
        for (from, to) in moves {
            m.command_state(from, to);
        }
    }
}

impl SessionStore for MeteredStore {
    fn get_session(
        &self,
        device_id: &str,
        session_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.timed(StoreOp::GetSession, |s| {
            s.get_session(device_id, session_id)
        })
    }
    fn commit_round(&self, round: &Round, now: i64) -> Result<RoundCommit, StoreError> {
        let moves = self.m.enabled().then(|| transitions(round));
        let r = self.timed(StoreOp::CommitRound, |s| s.commit_round(round, now));
        committed(&self.m, &r, moves);
        r
    }
    fn commit_round_async(&self, round: Round, now: i64) -> StoreFuture<RoundCommit> {
        if !self.m.enabled() {
            return self.inner.commit_round_async(round, now);
        }
        let moves = Some(transitions(&round));
        let t = Instant::now();
        let pending = self.inner.commit_round_async(round, now);
        let m = self.m.clone();
        Box::pin(async move {
            let r = pending.await;
            m.store_op(StoreOp::CommitRound, t.elapsed(), r.as_ref().err());
            committed(&m, &r, moves);
            r
        })
    }
    fn reads_inline(&self) -> bool {
        self.inner.reads_inline()
    }
    fn sync_lazy(&self) -> Result<bool, StoreError> {
        self.inner.sync_lazy()
    }
}

impl RecordStore for MeteredStore {
    fn get_record(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.timed(StoreOp::GetRecord, |s| s.get_record(kind, key))
    }
    fn scan_records(
        &self,
        kind: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.timed(StoreOp::ScanRecords, |s| s.scan_records(kind, after, limit))
    }
    fn apply_records(&self, ops: &[RecordOp]) -> Result<bool, StoreError> {
        self.timed(StoreOp::ApplyRecords, |s| s.apply_records(ops))
    }
    fn check_ready(&self) -> Result<(), StoreError> {
        self.timed(StoreOp::CheckReady, |s| s.check_ready())
    }
}
