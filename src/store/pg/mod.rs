//! The PostgreSQL backend (`--database-url postgres://…`): one SQL table per [`Table`] with
//! typed key columns (see [`schema`]), the shared transactional logic of [`super::tx`] run
//! inside SERIALIZABLE transactions that are retried when the database aborts them
//! (SQLSTATE 40001 / 40P01), ids from a sequence, versioned migrations applied at start, and a
//! bounded connection pool ([`pool`]).
//!
//! Several winmdm nodes may share one database: every multi-record change is one serializable
//! transaction, so two nodes changing the same records concurrently are serialised by the
//! database (one of them retries). Nothing here uses PostgreSQL-only locking (no advisory
//! locks, no `LOCK TABLE`), so the same code runs on PostgreSQL-protocol distributed engines.

pub mod pool;
pub mod schema;

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{IsolationLevel, Statement, Transaction};

use self::pool::{backend, block_on, prepared, Lease, Pool};
use self::schema::{row_key, row_val, split_key, KeyVal, Sql, ValParam};
use super::tx::{self, decode, encode, KvPairs, Table, Tx};
use super::{
    normalize_upn, AuditEntry, AuditStore, Cancelled, CertRecord, CertStore, CommandQueue,
    CommandRecord, Device, DeviceStore, Enqueued, EnrollOutcome, Round, SessionStore, StoreError,
    User, UserStore,
};

/// How many times a transaction the database aborted as a serialization failure or deadlock
/// is run again before the error is returned.
pub const MAX_ATTEMPTS: u32 = 32;

/// Connection pool settings.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// At most this many connections.
    pub max_connections: usize,
    /// How long a caller waits for a free connection before failing.
    pub acquire_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(30),
        }
    }
}

/// A PostgreSQL database holding every [`Table`].
pub struct PgStore {
    pool: Pool,
    sql: Vec<Sql>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// `url` with its password replaced by `***` (for logs and errors). Handles URLs
/// (`postgres://user:pw@host/db`) and key=value strings (`password=pw`).
pub fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..auth_end].rfind('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
        // A password given as a query parameter.
        if let Some(q) = url.find("password=") {
            let end = url[q..].find('&').map_or(url.len(), |e| q + e);
            return format!("{}password=***{}", &url[..q], &url[end..]);
        }
        return url.to_string();
    }
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***".to_string()
            } else {
                kv.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `url` names a PostgreSQL database (rather than, say, a data directory).
pub fn is_database_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A transaction failure: the logic's own abort, or the database's error (which may ask for a
/// retry).
#[derive(Debug)]
pub enum TxErr {
    /// Returned by the logic (no retry).
    Abort(StoreError),
    /// From the database.
    Db(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for TxErr {
    fn from(e: tokio_postgres::Error) -> Self {
        TxErr::Db(e)
    }
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// Whether the connection is gone (closed, or the server ended the session: shutdown,
/// restart, `pg_terminate_backend`, failover): the statement did not complete and another
/// connection may run it.
fn conn_lost(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|c| {
            let c = c.code();
            c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03"
        })
}

fn db_err(e: tokio_postgres::Error) -> StoreError {
    if conn_lost(&e) {
        return pool::unavailable(format!("PostgreSQL connection lost: {e}"));
    }
    match e.as_db_error() {
        Some(d) => backend(format!("PostgreSQL: {} ({})", d.message(), d.code().code())),
        None => backend(format!("PostgreSQL: {e}")),
    }
}

/// A short randomised pause before attempt `attempt` (1-based) of a retried transaction.
fn backoff(attempt: u32) {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    let cap_ms = (1u64 << attempt.min(8)).min(200);
    std::thread::sleep(Duration::from_micros(h.finish() % (cap_ms * 1000)));
}

/// One statement target of a [`PgTx`]: the transaction and its connection's statements.
pub struct PgTx<'a, 'c> {
    txn: &'a Transaction<'c>,
    stmts: RefCell<&'a mut HashMap<String, Statement>>,
    sql: &'a [Sql],
}

impl PgTx<'_, '_> {
    fn stmt(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        prepared(self.txn, &mut self.stmts.borrow_mut(), sql)
    }
}

impl Tx for PgTx<'_, '_> {
    type E = TxErr;
    fn get(&self, t: Table, k: &[u8]) -> Result<Option<Vec<u8>>, TxErr> {
        let q = &self.sql[t as usize];
        let keys = split_key(&q.spec, k).map_err(TxErr::Abort)?;
        let params: Vec<_> = keys.iter().map(KeyVal::param).collect();
        let st = self.stmt(&q.get)?;
        match block_on(self.txn.query_opt(&st, &params))? {
            None => Ok(None),
            Some(row) => Ok(Some(row_val(q.spec.val.1, &row, 0)?)),
        }
    }
    fn insert(&self, t: Table, k: &[u8], v: Vec<u8>) -> Result<(), TxErr> {
        let q = &self.sql[t as usize];
        let keys = split_key(&q.spec, k).map_err(TxErr::Abort)?;
        let val = ValParam::of(q.spec.val.1, v).map_err(TxErr::Abort)?;
        let mut params: Vec<_> = keys.iter().map(KeyVal::param).collect();
        if let Some(v) = &val {
            params.push(v.param());
        }
        let st = self.stmt(&q.upsert)?;
        block_on(self.txn.execute(&st, &params))?;
        Ok(())
    }
    fn remove(&self, t: Table, k: &[u8]) -> Result<(), TxErr> {
        let q = &self.sql[t as usize];
        let keys = split_key(&q.spec, k).map_err(TxErr::Abort)?;
        let params: Vec<_> = keys.iter().map(KeyVal::param).collect();
        let st = self.stmt(&q.delete)?;
        block_on(self.txn.execute(&st, &params))?;
        Ok(())
    }
    fn abort(e: StoreError) -> TxErr {
        TxErr::Abort(e)
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://…`; `sslmode=require` for TLS), applies the pending
    /// migrations, and refuses a database whose schema is newer than this binary.
    pub fn connect(url: &str, opts: &PgOptions) -> Result<PgStore, StoreError> {
        let cfg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| backend(format!("invalid database URL {}: {e}", redact_url(url))))?;
        let pool = Pool::new(cfg, opts.max_connections, opts.acquire_timeout)?;
        let store = PgStore {
            pool,
            sql: Table::ALL.iter().map(|t| Sql::of(*t)).collect(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The schema version of the database (0: none yet).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.with_conn(|c| {
            let row = block_on(c.client.query_one(
                "SELECT CASE WHEN to_regclass('schema_migrations') IS NULL THEN 0::bigint \
                 ELSE (SELECT coalesce(max(version), 0)::bigint FROM schema_migrations) END",
                &[],
            ))?;
            row.try_get::<_, i64>(0)
        })
    }

    /// Whether the database is reachable and at this binary's schema version.
    pub fn check_schema(&self) -> Result<(), StoreError> {
        let v = self.schema_version()?;
        if v != schema::latest() {
            return Err(backend(format!(
                "database schema is at version {v}, this binary expects {}",
                schema::latest()
            )));
        }
        Ok(())
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let latest = schema::latest();
        for attempt in 1..=MAX_ATTEMPTS {
            let mut lease = self.pool.get()?;
            let r: Result<Result<usize, StoreError>, tokio_postgres::Error> = (|| {
                let c = &mut lease.conn().client;
                let txn = block_on(
                    c.build_transaction()
                        .isolation_level(IsolationLevel::Serializable)
                        .start(),
                )?;
                block_on(txn.batch_execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (\
                     version bigint PRIMARY KEY, description text NOT NULL, \
                     applied_at timestamptz NOT NULL DEFAULT now())",
                ))?;
                let row = block_on(txn.query_one(
                    "SELECT coalesce(max(version), 0)::bigint FROM schema_migrations",
                    &[],
                ))?;
                let current: i64 = row.try_get(0)?;
                if current > latest {
                    return Ok(Err(backend(format!(
                        "the database schema is at version {current}, newer than this binary's \
                         {latest}: run a winmdm at least as new as the one that migrated it"
                    ))));
                }
                let mut applied = 0;
                for (version, description, sql) in schema::MIGRATIONS {
                    if *version <= current {
                        continue;
                    }
                    block_on(txn.batch_execute(sql))?;
                    block_on(txn.execute(
                        "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
                        &[version, description],
                    ))?;
                    applied += 1;
                }
                block_on(txn.commit())?;
                Ok(Ok(applied))
            })();
            match r {
                Ok(Ok(n)) => {
                    if n > 0 {
                        tracing::info!(applied = n, version = latest, "database schema migrated");
                    }
                    return Ok(());
                }
                Ok(Err(e)) => return Err(e),
                // Another node migrating at the same moment: run again and see its result.
                Err(e)
                    if attempt < MAX_ATTEMPTS
                        && (retryable(&e)
                            || e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                            || e.code() == Some(&SqlState::DUPLICATE_TABLE)) =>
                {
                    backoff(attempt)
                }
                Err(e) => return Err(db_err(e)),
            }
        }
        Err(backend("database migration kept conflicting"))
    }

    /// Runs `f` on a pooled connection, again on a fresh one when a reused connection turns
    /// out gone (the database restarted, or ended the session, while it was idle).
    fn with_conn<R>(
        &self,
        f: impl Fn(&mut pool::Conn) -> Result<R, tokio_postgres::Error>,
    ) -> Result<R, StoreError> {
        loop {
            let mut lease = self.pool.get()?;
            match f(lease.conn()) {
                Ok(r) => return Ok(r),
                Err(e) if conn_lost(&e) && lease.reused => lease.discard(),
                Err(e) => {
                    if conn_lost(&e) {
                        lease.discard();
                    }
                    return Err(db_err(e));
                }
            }
        }
    }

    /// One statement outside a transaction.
    fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.with_conn(|c| {
            let st = prepared(&c.client, &mut c.stmts, sql)?;
            block_on(c.client.query(&st, params))
        })
    }

    fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        self.with_conn(|c| {
            let st = prepared(&c.client, &mut c.stmts, sql)?;
            block_on(c.client.execute(&st, params))
        })
    }

    /// Runs `f` in one SERIALIZABLE transaction, again (up to [`MAX_ATTEMPTS`] times) when the
    /// database aborts it as a serialization failure or deadlock, or when a reused connection
    /// turns out closed before the commit was sent. `f` must therefore be re-runnable (the
    /// functions of [`super::tx`] are: they only read and write through the transaction).
    pub fn transact<R>(
        &self,
        f: impl Fn(&PgTx<'_, '_>) -> Result<R, TxErr>,
    ) -> Result<R, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut lease: Lease<'_> = self.pool.get()?;
            let reused = lease.reused;
            let mut committing = false;
            let r = (|| {
                let pool::Conn { client, stmts } = lease.conn();
                let txn = block_on(
                    client
                        .build_transaction()
                        .isolation_level(IsolationLevel::Serializable)
                        .start(),
                )?;
                let out = f(&PgTx {
                    txn: &txn,
                    stmts: RefCell::new(stmts),
                    sql: &self.sql,
                })?;
                committing = true;
                block_on(txn.commit())?;
                Ok(out)
            })();
            match r {
                Ok(v) => return Ok(v),
                Err(TxErr::Abort(e)) => return Err(e),
                Err(TxErr::Db(e)) if attempt < MAX_ATTEMPTS && retryable(&e) => {
                    drop(lease);
                    backoff(attempt);
                }
                Err(TxErr::Db(e))
                    if attempt < MAX_ATTEMPTS && e.is_closed() && reused && !committing =>
                {
                    drop(lease);
                }
                Err(TxErr::Db(e)) => return Err(db_err(e)),
            }
        }
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        t: Table,
        what: &'static str,
        k: &[u8],
    ) -> Result<Option<T>, StoreError> {
        tx::KvRead::get(self, t, k)?
            .map(|b| decode(what, &b))
            .transpose()
    }

    fn put(&self, t: Table, k: &[u8], v: Vec<u8>) -> Result<(), StoreError> {
        let q = &self.sql[t as usize];
        let keys = split_key(&q.spec, k)?;
        let val = ValParam::of(q.spec.val.1, v)?;
        let mut params: Vec<_> = keys.iter().map(KeyVal::param).collect();
        if let Some(v) = &val {
            params.push(v.param());
        }
        self.execute(&q.upsert, &params).map(|_| ())
    }

    fn rows_kv(&self, t: Table, rows: &[tokio_postgres::Row]) -> Result<KvPairs, StoreError> {
        let q = &self.sql[t as usize];
        let n = q.spec.keys.len();
        rows.iter()
            .map(|r| Ok((row_key(&q.spec, r)?, row_val(q.spec.val.1, r, n)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(db_err)
    }

    /// Ids (audit entries, command queue positions), increasing, from the database sequence.
    fn next_ids(&self, n: usize) -> Result<Vec<u64>, StoreError> {
        let rows = self.query(
            "SELECT nextval('winmdm_ids') FROM generate_series(1, $1::bigint)",
            &[&(n as i64)],
        )?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get(0).map_err(db_err)?;
                u64::try_from(id).map_err(backend)
            })
            .collect()
    }

    /// Whether every table is empty (the target of `winmdm migrate` must be).
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        for t in Table::ALL {
            let sql = format!("SELECT 1 FROM {} LIMIT 1", t.name());
            if !self.query(&sql, &[])?.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Number of rows of `t`.
    pub fn count(&self, t: Table) -> Result<u64, StoreError> {
        let sql = format!("SELECT count(*) FROM {}", t.name());
        let rows = self.query(&sql, &[])?;
        let n: i64 = rows
            .first()
            .ok_or_else(|| backend("count returned no row"))?
            .try_get(0)
            .map_err(db_err)?;
        Ok(n.max(0) as u64)
    }

    /// The pool's connection bound.
    pub fn max_connections(&self) -> usize {
        self.pool.max()
    }
}

/// Raw rows go in through the store's own transaction, which maps each key onto the table's
/// columns (`winmdm migrate`).
/// PostgreSQL is backed up with its own tools (`pg_dump`, base backups); `winmdm backup` then
/// archives the key files only.
impl crate::store::Snapshots for PgStore {
    fn snapshot(&self) -> Result<Option<Box<dyn tx::KvRead + '_>>, StoreError> {
        Ok(None)
    }
}

impl tx::RawImport for PgStore {
    fn import(&self, t: Table, kv: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StoreError> {
        self.transact(|x| {
            for (k, v) in kv {
                x.insert(t, k, v.clone())?;
            }
            Ok(())
        })
    }

    fn count(&self, t: Table) -> Result<u64, StoreError> {
        PgStore::count(self, t)
    }

    /// Moves the id sequence so the next id is above `floor`.
    fn raise_ids_above(&self, floor: u64) -> Result<(), StoreError> {
        let v = i64::try_from(floor.max(1)).map_err(backend)?;
        self.query(
            "SELECT setval('winmdm_ids', greatest($1::bigint, (SELECT last_value FROM winmdm_ids)))",
            &[&v],
        )
        .map(|_| ())
    }
}

impl UserStore for PgStore {
    fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let upn = normalize_upn(&user.upn);
        let doc = String::from_utf8(encode(&super::with_id(user))).map_err(backend)?;
        let n = self.execute(
            "INSERT INTO users (upn, doc) VALUES ($1, $2::text::jsonb) ON CONFLICT DO NOTHING",
            &[&upn, &doc],
        )?;
        if n == 0 {
            return Err(StoreError::AlreadyExists { what: "user" });
        }
        Ok(())
    }
    fn get_user(&self, upn: &str) -> Result<Option<User>, StoreError> {
        self.get_json(Table::Users, "user", normalize_upn(upn).as_bytes())
    }
    fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.query("SELECT doc::text FROM users ORDER BY upn", &[])?
            .iter()
            .map(|r| {
                let s: String = r.try_get(0).map_err(db_err)?;
                decode("user", s.as_bytes())
            })
            .collect()
    }
    fn delete_user(&self, upn: &str) -> Result<bool, StoreError> {
        let n = self.execute("DELETE FROM users WHERE upn = $1", &[&normalize_upn(upn)])?;
        Ok(n > 0)
    }
    fn update_user(&self, user: &User) -> Result<bool, StoreError> {
        self.transact(|t| tx::update_user(t, user))
    }
}

impl DeviceStore for PgStore {
    fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError> {
        self.get_json(Table::Devices, "device", device_id.as_bytes())
    }
    fn list_devices(&self, after: Option<&str>, limit: usize) -> Result<Vec<Device>, StoreError> {
        tx::KvRead::scan_after(self, Table::Devices, after.map(str::as_bytes), limit)?
            .iter()
            .map(|(_, v)| decode("device", v))
            .collect()
    }
    fn put_device(&self, device: &Device) -> Result<(), StoreError> {
        self.put(Table::Devices, device.device_id.as_bytes(), encode(device))
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
        // Read inside the retry loop's transaction would need scans in `Tx`; as on the other
        // backends the leftovers are read just before (a command queued in between stays
        // queued for a device that is gone, as on sled).
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

impl AuditStore for PgStore {
    fn append_audit(&self, mut entry: AuditEntry) -> Result<u64, StoreError> {
        let id = self
            .next_ids(1)?
            .first()
            .copied()
            .ok_or_else(|| backend("no id from the sequence"))?;
        entry.id = id;
        self.put(Table::Audit, &id.to_be_bytes(), encode(&entry))?;
        Ok(id)
    }
    fn list_audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let after = after.map(u64::to_be_bytes);
        let kv = tx::KvRead::scan_after(self, Table::Audit, after.as_ref().map(|a| &a[..]), limit)?;
        tx::audit_entries(kv)
    }
}

impl CertStore for PgStore {
    fn get_cert(&self, serial: &str) -> Result<Option<CertRecord>, StoreError> {
        self.get_json(Table::Certs, "certificate", serial.as_bytes())
    }
    fn put_cert(&self, cert: &CertRecord) -> Result<(), StoreError> {
        self.put(Table::Certs, cert.serial.as_bytes(), encode(cert))
    }
    fn revoke_cert(&self, serial: &str, reason: &str, now: i64) -> Result<bool, StoreError> {
        if self.get_cert(serial)?.is_none() {
            return Ok(false);
        }
        self.transact(|t| tx::revoke(t, serial, reason, now))?;
        Ok(true)
    }
    fn list_revoked(&self) -> Result<Vec<CertRecord>, StoreError> {
        self.query(
            "SELECT c.doc::text FROM revoked r JOIN certs c ON c.serial = r.serial ORDER BY r.serial",
            &[],
        )?
        .iter()
        .map(|r| {
            let s: String = r.try_get(0).map_err(db_err)?;
            decode("certificate", s.as_bytes())
        })
        .collect()
    }
    fn count_certs(&self) -> Result<u64, StoreError> {
        self.count(Table::Certs)
    }
}

impl tx::KvRead for PgStore {
    fn get(&self, t: Table, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let q = &self.sql[t as usize];
        let keys = split_key(&q.spec, k)?;
        let params: Vec<_> = keys.iter().map(KeyVal::param).collect();
        let rows = self.query(&q.get, &params)?;
        rows.first()
            .map(|r| row_val(q.spec.val.1, r, 0).map_err(db_err))
            .transpose()
    }

    fn scan_prefix(&self, t: Table, prefix: &[u8]) -> Result<KvPairs, StoreError> {
        let q = &self.sql[t as usize];
        let sep = prefix.iter().position(|c| *c == 0);
        let rows = match (q.spec.keys.len(), sep) {
            // `first \0 …`: the rows of one first-column value (device, kind).
            (2, Some(i)) => {
                let first = std::str::from_utf8(&prefix[..i]).map_err(backend)?;
                self.query(&q.scan_first_col, &[&first])?
            }
            _ => {
                let p = String::from_utf8_lossy(&prefix[..sep.unwrap_or(prefix.len())]);
                self.query(&q.scan_starts, &[&p.as_ref()])?
            }
        };
        let mut kv = self.rows_kv(t, &rows)?;
        kv.retain(|(k, _)| k.starts_with(prefix));
        Ok(kv)
    }

    fn scan_after(
        &self,
        t: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KvPairs, StoreError> {
        let q = &self.sql[t as usize];
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match after {
            None => self.query(&q.scan_first, &[&limit])?,
            Some(a) => {
                let keys = split_key(&q.spec, a)?;
                let mut params: Vec<_> = keys.iter().map(KeyVal::param).collect();
                params.push(&limit);
                self.query(&q.scan_after, &params)?
            }
        };
        self.rows_kv(t, &rows)
    }
}

impl PgStore {
    /// Gives each command the next queue position from the database's sequence.
    fn set_seqs(&self, cmds: &mut [CommandRecord]) -> Result<(), StoreError> {
        let ids = self.next_ids(cmds.len())?;
        if ids.len() != cmds.len() {
            return Err(backend("the sequence returned too few ids"));
        }
        for (c, id) in cmds.iter_mut().zip(ids) {
            c.seq = id;
        }
        Ok(())
    }
}

impl CommandQueue for PgStore {
    fn enqueue(&self, mut cmd: CommandRecord) -> Result<Enqueued, StoreError> {
        cmd.seq = self
            .next_ids(1)?
            .first()
            .copied()
            .ok_or_else(|| backend("no id from the sequence"))?;
        self.transact(|t| tx::enqueue(t, &cmd))
    }
    fn enqueue_many(&self, mut cmds: Vec<CommandRecord>) -> Result<Vec<Enqueued>, StoreError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        self.set_seqs(&mut cmds)?;
        self.transact(|t| cmds.iter().map(|c| tx::enqueue(t, c)).collect())
    }
    fn enqueue_gated_many(
        &self,
        mut cmds: Vec<CommandRecord>,
    ) -> Result<Vec<Result<Enqueued, tx::Refusal>>, StoreError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        self.set_seqs(&mut cmds)?;
        self.transact(|t| cmds.iter().map(|c| tx::enqueue_gated(t, c)).collect())
    }
    fn apply_changes(
        &self,
        mut c: tx::ChangeSet,
        now: i64,
    ) -> Result<Option<tx::Applied>, StoreError> {
        if !c.commands.is_empty() {
            self.set_seqs(&mut c.commands)?;
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
    fn cancel(&self, device_id: &str, command_id: &str, now: i64) -> Result<Cancelled, StoreError> {
        self.transact(|t| tx::cancel(t, device_id, command_id, now))
    }
    fn clear(&self, device_id: &str, now: i64) -> Result<usize, StoreError> {
        let ids = tx::queued_ids(self, device_id)?;
        self.transact(|t| tx::cancel_many(t, &ids, now))
    }
    fn cancel_many(&self, ids: &[(String, String)], now: i64) -> Result<usize, StoreError> {
        self.transact(|t| tx::cancel_many(t, ids, now))
    }
    fn scan_commands(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        tx::scan_commands(self, after, limit)
    }
    fn delete_finished(&self, ids: &[(String, String)]) -> Result<usize, StoreError> {
        self.transact(|t| tx::delete_finished(t, ids))
    }
    fn queue_stats(&self, limit: usize) -> Result<super::QueueStats, StoreError> {
        // One statement: the database counts. The queue table holds unanswered commands only;
        // at most `limit` of them are joined with their records (primary-key lookups).
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(
            "SELECT c.doc->>'verb', c.doc->>'state', count(*)::bigint, \
                    min((c.doc->>'created_at')::bigint) \
             FROM (SELECT device_id, command_id FROM queue LIMIT $1) q \
             JOIN commands c ON c.device_id = q.device_id AND c.command_id = q.command_id \
             GROUP BY 1, 2",
            &[&limit],
        )?;
        let mut out = super::QueueStats::default();
        let mut total: i64 = 0;
        for row in rows {
            let verb: Option<String> = row.try_get(0).map_err(backend)?;
            let state: Option<String> = row.try_get(1).map_err(backend)?;
            let n: i64 = row.try_get(2).map_err(backend)?;
            let oldest: Option<i64> = row.try_get(3).map_err(backend)?;
            total += n;
            let state = match state.as_deref() {
                Some("pending") => super::CommandState::Pending,
                Some("sent") => super::CommandState::Sent,
                _ => continue,
            };
            out.add(
                verb.as_deref().unwrap_or(""),
                state,
                oldest.unwrap_or(0),
                u64::try_from(n).unwrap_or(0),
            );
        }
        out.complete = total < limit || {
            // Exactly `limit` read: complete unless there is one more.
            let more = self.query(
                "SELECT count(*)::bigint FROM (SELECT 1 FROM queue LIMIT $1) x",
                &[&limit.saturating_add(1)],
            )?;
            let n: i64 = more
                .first()
                .map(|r| r.try_get(0))
                .transpose()
                .map_err(backend)?
                .unwrap_or(0);
            n <= limit
        };
        Ok(out)
    }
}

impl SessionStore for PgStore {
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

impl super::RecordStore for PgStore {
    fn get_record(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self.query(
            "SELECT value FROM records WHERE kind = $1 AND key = $2",
            &[&kind, &key.as_bytes()],
        )?;
        rows.first()
            .map(|r| r.try_get::<_, Vec<u8>>(0).map_err(db_err))
            .transpose()
    }

    fn scan_records(
        &self,
        kind: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match after {
            None => self.query(
                "SELECT key, value FROM records WHERE kind = $1 ORDER BY key LIMIT $2",
                &[&kind, &limit],
            )?,
            Some(a) => self.query(
                "SELECT key, value FROM records WHERE kind = $1 AND key > $2 ORDER BY key LIMIT $3",
                &[&kind, &a.as_bytes(), &limit],
            )?,
        };
        rows.iter()
            .map(|r| {
                let k: Vec<u8> = r.try_get(0).map_err(db_err)?;
                let v: Vec<u8> = r.try_get(1).map_err(db_err)?;
                let k = String::from_utf8(k).map_err(|_| StoreError::Corrupt {
                    what: "record key",
                    reason: "not UTF-8".into(),
                })?;
                Ok((k, v))
            })
            .collect()
    }

    fn apply_records(&self, ops: &[super::RecordOp]) -> Result<bool, StoreError> {
        self.transact(|t| super::records::apply_in_tx(t, ops))
    }

    fn check_ready(&self) -> Result<(), StoreError> {
        self.check_schema()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        for (url, want) in [
            (
                "postgres://u:pw@h:5432/db?sslmode=require",
                "postgres://u:***@h:5432/db?sslmode=require",
            ),
            ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://h/db?user=u&password=pw&x=1",
                "postgres://h/db?user=u&password=***&x=1",
            ),
            (
                "host=h user=u password=pw dbname=d",
                "host=h user=u password=*** dbname=d",
            ),
        ] {
            assert_eq!(redact_url(url), want);
        }
        assert!(is_database_url("postgresql://x/y") && !is_database_url("/var/lib/winmdm"));
    }
}
