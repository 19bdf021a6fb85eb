//! The embedded default backend: sled 0.34, one `Tree` per [`Table`], multi-tree transactions
//! for enrollment, and a synchronous `flush()` after every write so an acknowledged change
//! survives a crash (never `flush_async`, which deadlocks under concurrency in 0.34.7).

use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use super::tx::{self, decode, encode, KvPairs, Table, Tx};
use super::{
    normalize_upn, AuditEntry, AuditStore, Cancelled, CertRecord, CertStore, CommandQueue,
    CommandRecord, Device, DeviceStore, Enqueued, EnrollOutcome, Round, SessionStore, StoreError,
    User, UserStore,
};

/// sled page cache used by [`SledStore::open`] (`--store-cache-mb`, default 128).
pub const DEFAULT_CACHE_BYTES: u64 = 128 << 20;

/// A sled database holding every [`Table`].
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    trees: Vec<sled::Tree>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        reason: e.to_string(),
    }
}

impl SledStore {
    /// Opens (or creates) the database in `dir` with sled's page cache at [`DEFAULT_CACHE_BYTES`].
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the database in `dir`; sled keeps up to `cache_bytes` of pages in
    /// memory (its own default is 1 GiB, which makes the server's RSS grow with the store).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(backend)?;
        Self::from_db(db)
    }

    /// A throw-away database for tests.
    pub fn temporary() -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(backend)?;
        Self::from_db(db)
    }

    fn from_db(db: sled::Db) -> Result<SledStore, StoreError> {
        let trees = Table::ALL
            .iter()
            .map(|t| db.open_tree(t.name()).map_err(backend))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SledStore { db, trees })
    }

    fn tree(&self, t: Table) -> &sled::Tree {
        &self.trees[t as usize]
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(backend)
    }

    /// Runs `f` in one transaction over every table, then flushes.
    fn transact<R>(
        &self,
        f: impl Fn(&SledTx<'_>) -> Result<R, ConflictableTransactionError<StoreError>>,
    ) -> Result<R, StoreError> {
        let r = self
            .trees
            .as_slice()
            .transaction(|trees| f(&SledTx(trees)))
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => backend(e),
            })?;
        self.flush()?;
        Ok(r)
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        t: Table,
        what: &'static str,
        k: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.tree(t).get(k).map_err(backend)? {
            None => Ok(None),
            Some(v) => decode(what, &v).map(Some),
        }
    }
}

struct SledTx<'a>(&'a [TransactionalTree]);

impl Tx for SledTx<'_> {
    type E = ConflictableTransactionError<StoreError>;
    fn get(&self, t: Table, k: &[u8]) -> Result<Option<Vec<u8>>, Self::E> {
        Ok(self.0[t as usize].get(k)?.map(|v| v.to_vec()))
    }
    fn insert(&self, t: Table, k: &[u8], v: Vec<u8>) -> Result<(), Self::E> {
        self.0[t as usize].insert(k, v)?;
        Ok(())
    }
    fn remove(&self, t: Table, k: &[u8]) -> Result<(), Self::E> {
        self.0[t as usize].remove(k)?;
        Ok(())
    }
    fn abort(e: StoreError) -> Self::E {
        ConflictableTransactionError::Abort(e)
    }
}

impl UserStore for SledStore {
    fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let key = normalize_upn(&user.upn);
        let swapped = self
            .tree(Table::Users)
            .compare_and_swap(
                key.as_bytes(),
                None as Option<&[u8]>,
                Some(encode(&super::with_id(user))),
            )
            .map_err(backend)?;
        if swapped.is_err() {
            return Err(StoreError::AlreadyExists { what: "user" });
        }
        self.flush()
    }

    fn get_user(&self, upn: &str) -> Result<Option<User>, StoreError> {
        self.get_json(Table::Users, "user", normalize_upn(upn).as_bytes())
    }

    fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.tree(Table::Users)
            .iter()
            .map(|r| r.map_err(backend).and_then(|(_, v)| decode("user", &v)))
            .collect()
    }

    fn delete_user(&self, upn: &str) -> Result<bool, StoreError> {
        let old = self
            .tree(Table::Users)
            .remove(normalize_upn(upn).as_bytes())
            .map_err(backend)?;
        self.flush()?;
        Ok(old.is_some())
    }

    fn update_user(&self, user: &User) -> Result<bool, StoreError> {
        self.transact(|t| tx::update_user(t, user))
    }
}

impl DeviceStore for SledStore {
    fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError> {
        self.get_json(Table::Devices, "device", device_id.as_bytes())
    }

    fn list_devices(&self, after: Option<&str>, limit: usize) -> Result<Vec<Device>, StoreError> {
        use std::ops::Bound;
        let start = match after {
            Some(a) => Bound::Excluded(a.as_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        self.tree(Table::Devices)
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take(limit)
            .map(|r| r.map_err(backend).and_then(|(_, v)| decode("device", &v)))
            .collect()
    }

    fn put_device(&self, device: &Device) -> Result<(), StoreError> {
        self.tree(Table::Devices)
            .insert(device.device_id.as_bytes(), encode(device))
            .map_err(backend)?;
        self.flush()
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

impl AuditStore for SledStore {
    fn append_audit(&self, mut entry: AuditEntry) -> Result<u64, StoreError> {
        entry.id = self.db.generate_id().map_err(backend)?;
        self.tree(Table::Audit)
            .insert(entry.id.to_be_bytes(), encode(&entry))
            .map_err(backend)?;
        self.flush()?;
        Ok(entry.id)
    }

    fn list_audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(a.to_be_bytes().to_vec()),
            None => std::ops::Bound::Unbounded,
        };
        let kv = self
            .tree(Table::Audit)
            .range::<Vec<u8>, _>((start, std::ops::Bound::Unbounded))
            .take(limit)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(backend))
            .collect::<Result<KvPairs, _>>()?;
        tx::audit_entries(kv)
    }
}

impl CertStore for SledStore {
    fn get_cert(&self, serial: &str) -> Result<Option<CertRecord>, StoreError> {
        self.get_json(Table::Certs, "certificate", serial.as_bytes())
    }

    fn put_cert(&self, cert: &CertRecord) -> Result<(), StoreError> {
        self.tree(Table::Certs)
            .insert(cert.serial.as_bytes(), encode(cert))
            .map_err(backend)?;
        self.flush()
    }

    fn revoke_cert(&self, serial: &str, reason: &str, now: i64) -> Result<bool, StoreError> {
        if self.get_cert(serial)?.is_none() {
            return Ok(false);
        }
        self.transact(|t| tx::revoke(t, serial, reason, now))?;
        Ok(true)
    }

    fn list_revoked(&self) -> Result<Vec<CertRecord>, StoreError> {
        let mut out = Vec::new();
        for r in self.tree(Table::Revoked).iter() {
            let (k, _) = r.map_err(backend)?;
            if let Some(c) = self.get_json(Table::Certs, "certificate", &k)? {
                out.push(c);
            }
        }
        Ok(out)
    }

    fn count_certs(&self) -> Result<u64, StoreError> {
        Ok(self.tree(Table::Certs).len() as u64)
    }
}

/// Only read to migrate an old data directory; never backed up.
impl super::Snapshots for SledStore {
    fn snapshot(&self) -> Result<Option<Box<dyn tx::KvRead + '_>>, StoreError> {
        Ok(None)
    }
}

impl tx::KvRead for SledStore {
    fn get(&self, t: Table, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(t).get(k).map_err(backend)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, t: Table, prefix: &[u8]) -> Result<KvPairs, StoreError> {
        self.tree(t)
            .scan_prefix(prefix)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(backend))
            .collect()
    }

    fn scan_after(
        &self,
        t: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KvPairs, StoreError> {
        use std::ops::Bound;
        let start = match after {
            Some(a) => Bound::Excluded(a.to_vec()),
            None => Bound::Unbounded,
        };
        self.tree(t)
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take(limit)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(backend))
            .collect()
    }
}

impl CommandQueue for SledStore {
    fn enqueue(&self, mut cmd: CommandRecord) -> Result<Enqueued, StoreError> {
        cmd.seq = self.db.generate_id().map_err(backend)?;
        self.transact(|t| tx::enqueue(t, &cmd))
    }

    fn enqueue_many(&self, mut cmds: Vec<CommandRecord>) -> Result<Vec<Enqueued>, StoreError> {
        for c in cmds.iter_mut() {
            c.seq = self.db.generate_id().map_err(backend)?;
        }
        self.transact(|t| cmds.iter().map(|c| tx::enqueue(t, c)).collect())
    }

    fn enqueue_gated_many(
        &self,
        mut cmds: Vec<CommandRecord>,
    ) -> Result<Vec<Result<Enqueued, tx::Refusal>>, StoreError> {
        for c in cmds.iter_mut() {
            c.seq = self.db.generate_id().map_err(backend)?;
        }
        self.transact(|t| cmds.iter().map(|c| tx::enqueue_gated(t, c)).collect())
    }

    fn apply_changes(
        &self,
        mut c: tx::ChangeSet,
        now: i64,
    ) -> Result<Option<tx::Applied>, StoreError> {
        for cmd in c.commands.iter_mut() {
            cmd.seq = self.db.generate_id().map_err(backend)?;
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

impl SessionStore for SledStore {
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
}

impl super::RecordStore for SledStore {
    fn get_record(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree(Table::Records)
            .get(super::records::record_key(kind, key))
            .map_err(backend)?
            .map(|v| v.to_vec()))
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
            Some(a) => Bound::Excluded(super::records::record_key(kind, a)),
            None => Bound::Included(prefix.clone()),
        };
        let mut out = Vec::new();
        for r in self
            .tree(Table::Records)
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
        {
            let (k, v) = r.map_err(backend)?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            out.push((super::records::key_part(kind, &k)?, v.to_vec()));
        }
        Ok(out)
    }

    fn apply_records(&self, ops: &[super::RecordOp]) -> Result<bool, StoreError> {
        self.transact(|t| super::records::apply_in_tx(t, ops))
    }
}
