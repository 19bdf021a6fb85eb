//! An in-memory backend for unit tests: the same [`Tx`] logic over `BTreeMap`s behind a mutex.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use super::tx::{self, decode, encode, KvPairs, Table, Tx};
use super::{
    normalize_upn, AuditEntry, AuditStore, Cancelled, CertRecord, CertStore, CommandQueue,
    CommandRecord, Device, DeviceStore, Enqueued, EnrollOutcome, Round, SessionStore, StoreError,
    User, UserStore,
};

type Tables = BTreeMap<(Table, Vec<u8>), Vec<u8>>;

/// In-memory store; nothing survives the process.
#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<Tables>,
    seq: std::sync::atomic::AtomicU64,
}

struct MemTx<'a>(std::cell::RefCell<&'a mut Tables>);

impl Tx for MemTx<'_> {
    type E = StoreError;
    fn get(&self, t: Table, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.0.borrow().get(&(t, k.to_vec())).cloned())
    }
    fn insert(&self, t: Table, k: &[u8], v: Vec<u8>) -> Result<(), StoreError> {
        self.0.borrow_mut().insert((t, k.to_vec()), v);
        Ok(())
    }
    fn remove(&self, t: Table, k: &[u8]) -> Result<(), StoreError> {
        self.0.borrow_mut().remove(&(t, k.to_vec()));
        Ok(())
    }
    fn abort(e: StoreError) -> StoreError {
        e
    }
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` atomically: on error nothing it wrote is kept.
    fn transact<R>(
        &self,
        f: impl FnOnce(&MemTx<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut guard = self.lock();
        let mut copy = guard.clone();
        let r = f(&MemTx(std::cell::RefCell::new(&mut copy)))?;
        *guard = copy;
        Ok(r)
    }

    fn scan<T: serde::de::DeserializeOwned>(
        &self,
        t: Table,
        what: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        self.lock()
            .range((t, Vec::new())..)
            .take_while(|((tt, _), _)| *tt == t)
            .map(|(_, v)| decode(what, v))
            .collect()
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        t: Table,
        what: &'static str,
        k: &[u8],
    ) -> Result<Option<T>, StoreError> {
        self.lock()
            .get(&(t, k.to_vec()))
            .map(|v| decode(what, v))
            .transpose()
    }
}

impl UserStore for MemStore {
    fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let key = (Table::Users, normalize_upn(&user.upn).into_bytes());
        let mut g = self.lock();
        if g.contains_key(&key) {
            return Err(StoreError::AlreadyExists { what: "user" });
        }
        g.insert(key, encode(&super::with_id(user)));
        Ok(())
    }
    fn get_user(&self, upn: &str) -> Result<Option<User>, StoreError> {
        self.get_json(Table::Users, "user", normalize_upn(upn).as_bytes())
    }
    fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.scan(Table::Users, "user")
    }
    fn delete_user(&self, upn: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .remove(&(Table::Users, normalize_upn(upn).into_bytes()))
            .is_some())
    }
    fn update_user(&self, user: &User) -> Result<bool, StoreError> {
        self.transact(|t| tx::update_user(t, user))
    }
}

impl DeviceStore for MemStore {
    fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError> {
        self.get_json(Table::Devices, "device", device_id.as_bytes())
    }
    fn list_devices(&self, after: Option<&str>, limit: usize) -> Result<Vec<Device>, StoreError> {
        use std::ops::Bound;
        let start = match after {
            Some(a) => Bound::Excluded((Table::Devices, a.as_bytes().to_vec())),
            None => Bound::Included((Table::Devices, Vec::new())),
        };
        self.lock()
            .range((start, Bound::Unbounded))
            .take_while(|((t, _), _)| *t == Table::Devices)
            .take(limit)
            .map(|(_, v)| decode("device", v))
            .collect()
    }
    fn put_device(&self, device: &Device) -> Result<(), StoreError> {
        self.lock().insert(
            (Table::Devices, device.device_id.as_bytes().to_vec()),
            encode(device),
        );
        Ok(())
    }
    fn record_enrollment(
        &self,
        device: &Device,
        cert: &CertRecord,
        now: i64,
        max_owned: Option<usize>,
    ) -> Result<EnrollOutcome, StoreError> {
        self.transact(|t| tx::record_enrollment(t, device, cert, now, max_owned))
    }
    fn delete_device(&self, device_id: &str, now: i64) -> Result<bool, StoreError> {
        let (queued, sessions) = tx::device_leftovers(self, device_id)?;
        self.transact(|t| tx::delete_device(t, device_id, &queued, &sessions, now))
    }

    fn record_renewal(
        &self,
        r: &super::RenewalCommit,
        now: i64,
    ) -> Result<super::RenewOutcome, StoreError> {
        self.transact(|t| tx::record_renewal(t, r, now))
    }
}

impl AuditStore for MemStore {
    fn append_audit(&self, mut entry: AuditEntry) -> Result<u64, StoreError> {
        entry.id = self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        self.lock().insert(
            (Table::Audit, entry.id.to_be_bytes().to_vec()),
            encode(&entry),
        );
        Ok(entry.id)
    }
    fn list_audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        use std::ops::Bound;
        let start = match after {
            Some(a) => Bound::Excluded((Table::Audit, a.to_be_bytes().to_vec())),
            None => Bound::Included((Table::Audit, Vec::new())),
        };
        let kv = self
            .lock()
            .range((start, Bound::Unbounded))
            .take_while(|((t, _), _)| *t == Table::Audit)
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect();
        tx::audit_entries(kv)
    }
}

impl CertStore for MemStore {
    fn get_cert(&self, serial: &str) -> Result<Option<CertRecord>, StoreError> {
        self.get_json(Table::Certs, "certificate", serial.as_bytes())
    }
    fn put_cert(&self, cert: &CertRecord) -> Result<(), StoreError> {
        self.lock().insert(
            (Table::Certs, cert.serial.as_bytes().to_vec()),
            encode(cert),
        );
        Ok(())
    }
    fn revoke_cert(&self, serial: &str, reason: &str, now: i64) -> Result<bool, StoreError> {
        if self.get_cert(serial)?.is_none() {
            return Ok(false);
        }
        self.transact(|t| tx::revoke(t, serial, reason, now))?;
        Ok(true)
    }
    fn list_revoked(&self) -> Result<Vec<CertRecord>, StoreError> {
        Ok(self
            .scan::<CertRecord>(Table::Certs, "certificate")?
            .into_iter()
            .filter(|c| c.revoked_at.is_some())
            .collect())
    }
    fn count_certs(&self) -> Result<u64, StoreError> {
        Ok(self.scan::<CertRecord>(Table::Certs, "certificate")?.len() as u64)
    }
}

/// A copy of every table, taken under the lock.
#[derive(Debug, Default)]
pub struct MemSnapshot(MemStore);

impl tx::KvRead for MemSnapshot {
    fn get(&self, t: Table, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        tx::KvRead::get(&self.0, t, k)
    }
    fn scan_prefix(&self, t: Table, prefix: &[u8]) -> Result<KvPairs, StoreError> {
        tx::KvRead::scan_prefix(&self.0, t, prefix)
    }
    fn scan_after(
        &self,
        t: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KvPairs, StoreError> {
        tx::KvRead::scan_after(&self.0, t, after, limit)
    }
}

impl MemStore {
    /// Every table as it is now.
    pub fn snapshot_view(&self) -> MemSnapshot {
        MemSnapshot(MemStore {
            inner: Mutex::new(self.lock().clone()),
            seq: Default::default(),
        })
    }
}

impl super::Snapshots for MemStore {
    fn snapshot(&self) -> Result<Option<Box<dyn tx::KvRead + '_>>, StoreError> {
        Ok(Some(Box::new(self.snapshot_view())))
    }
}

impl tx::RawImport for MemStore {
    fn import(&self, t: Table, kv: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StoreError> {
        let mut g = self.lock();
        for (k, v) in kv {
            g.insert((t, k.clone()), v.clone());
        }
        Ok(())
    }
    fn count(&self, t: Table) -> Result<u64, StoreError> {
        Ok(self.lock().keys().filter(|(tt, _)| *tt == t).count() as u64)
    }
    fn raise_ids_above(&self, floor: u64) -> Result<(), StoreError> {
        self.seq
            .fetch_max(floor, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

impl tx::KvRead for MemStore {
    fn get(&self, t: Table, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().get(&(t, k.to_vec())).cloned())
    }
    fn scan_prefix(&self, t: Table, prefix: &[u8]) -> Result<KvPairs, StoreError> {
        Ok(self
            .lock()
            .range((t, prefix.to_vec())..)
            .take_while(|((tt, k), _)| *tt == t && k.starts_with(prefix))
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn scan_after(
        &self,
        t: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KvPairs, StoreError> {
        use std::ops::Bound;
        let start = match after {
            Some(a) => Bound::Excluded((t, a.to_vec())),
            None => Bound::Included((t, Vec::new())),
        };
        Ok(self
            .lock()
            .range((start, Bound::Unbounded))
            .take_while(|((tt, _), _)| *tt == t)
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl CommandQueue for MemStore {
    fn enqueue(&self, mut cmd: CommandRecord) -> Result<Enqueued, StoreError> {
        cmd.seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        self.transact(|t| tx::enqueue(t, &cmd))
    }
    fn enqueue_many(&self, mut cmds: Vec<CommandRecord>) -> Result<Vec<Enqueued>, StoreError> {
        for c in cmds.iter_mut() {
            c.seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        }
        self.transact(|t| cmds.iter().map(|c| tx::enqueue(t, c)).collect())
    }

    fn enqueue_gated_many(
        &self,
        mut cmds: Vec<CommandRecord>,
    ) -> Result<Vec<Result<Enqueued, tx::Refusal>>, StoreError> {
        for c in cmds.iter_mut() {
            c.seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        }
        self.transact(|t| cmds.iter().map(|c| tx::enqueue_gated(t, c)).collect())
    }

    fn apply_changes(
        &self,
        mut c: tx::ChangeSet,
        now: i64,
    ) -> Result<Option<tx::Applied>, StoreError> {
        for cmd in c.commands.iter_mut() {
            cmd.seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        }
        self.transact(|t| tx::apply_changes(t, &c, now))
    }

    fn get_command(
        &self,
        device_id: &str,
        command_id: &str,
    ) -> Result<Option<CommandRecord>, StoreError> {
        tx::get_command(self, device_id, command_id)
    }
    fn list_commands(&self, device_id: &str) -> Result<Vec<CommandRecord>, StoreError> {
        tx::list_commands(self, device_id)
    }
    fn queued(&self, device_id: &str) -> Result<Vec<CommandRecord>, StoreError> {
        tx::queued(self, device_id)
    }
    fn cancel_many(&self, ids: &[(String, String)], now: i64) -> Result<usize, StoreError> {
        self.transact(|t| tx::cancel_many(t, ids, now))
    }

    fn cancel(&self, device_id: &str, command_id: &str, now: i64) -> Result<Cancelled, StoreError> {
        self.transact(|t| tx::cancel(t, device_id, command_id, now))
    }
    fn clear(&self, device_id: &str, now: i64) -> Result<usize, StoreError> {
        let ids = tx::queued_ids(self, device_id)?;
        self.transact(|t| tx::cancel_many(t, &ids, now))
    }

    fn scan_commands(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        tx::scan_commands(self, after, limit)
    }

    fn queue_stats(&self, limit: usize) -> Result<super::QueueStats, StoreError> {
        tx::queue_stats(self, limit)
    }

    fn delete_finished(&self, ids: &[(String, String)]) -> Result<usize, StoreError> {
        self.transact(|t| tx::delete_finished(t, ids))
    }
}

impl SessionStore for MemStore {
    fn get_session(
        &self,
        device_id: &str,
        session_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        tx::KvRead::get(
            self,
            Table::Sessions,
            &super::device_key(device_id, session_id.as_bytes()),
        )
    }
    fn commit_round(&self, round: &Round, now: i64) -> Result<super::RoundCommit, StoreError> {
        self.transact(|t| tx::commit_round(t, round, now))
    }
    fn reads_inline(&self) -> bool {
        true
    }
}

impl super::RecordStore for MemStore {
    fn get_record(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .lock()
            .get(&(Table::Records, super::records::record_key(kind, key)))
            .cloned())
    }

    fn scan_records(
        &self,
        kind: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        use std::ops::Bound;
        let prefix = super::records::record_key(kind, "");
        let start = match after {
            Some(a) => Bound::Excluded((Table::Records, super::records::record_key(kind, a))),
            None => Bound::Included((Table::Records, prefix.clone())),
        };
        self.lock()
            .range((start, Bound::Unbounded))
            .take_while(|((t, k), _)| *t == Table::Records && k.starts_with(&prefix))
            .take(limit)
            .map(|((_, k), v)| Ok((super::records::key_part(kind, k)?, v.clone())))
            .collect()
    }

    fn apply_records(&self, ops: &[super::RecordOp]) -> Result<bool, StoreError> {
        self.transact(|t| super::records::apply_in_tx(t, ops))
    }
}
