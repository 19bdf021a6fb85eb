//! The embedded default backend: redb, one file (`<data-dir>/store.redb`), one table per
//! [`Table`], and **group commit**: every write of the server — a management round, an
//! enrollment, an admin's enqueue — joins the write transaction that is being filled, and one
//! `commit()` (redb's default `Durability::Immediate`: the data and its commit record reach the
//! disk with `fsync` before it returns) covers every writer that joined. No writer returns before
//! the commit that covers its writes returned, so nothing is acknowledged before it is on disk;
//! and however many devices check in at once, they share syncs instead of queueing one sync each.
//!
//! How a batch forms (leader/follower, no thread of its own): a writer registers itself
//! (`queued`), waits while a commit is in flight, then runs its closure against the open
//! transaction through an overlay ([`RedbTx`]): if the closure fails, nothing it wrote reaches the
//! transaction and only it sees the error. The writer that leaves `queued` at zero commits the
//! batch for everyone in it; the others wait for that commit's outcome. Writers arriving during
//! a commit make up the next batch.
//!
//! **Writers that must not block** (management rounds on async worker threads,
//! [`super::SessionStore::commit_round_async`]) hand their closure to the store's committer
//! thread instead (started on first use): it takes every closure handed to it since its last
//! turn, joins them to the batch as writers of their own (each with its own overlay: one failing
//! closure fails only itself), and once the commit covering them returned, completes each
//! caller's future. The caller's task waits without a thread; the wake-ups per round are the
//! committer's, not a blocking thread's per writer.
//!
//! **Lazy rounds.** A management round that records nothing a device or an admin would miss (see
//! [`super::Round::lazy_sync`]: no command sent or answered, no alert, no change to the device
//! but its last-seen time) joins the batch as a lazy writer. A batch of lazy writers only is
//! committed with `Durability::None` (redb's in-memory commit: visible to every later
//! transaction, no `fsync`) unless the last durable commit is older than
//! [`super::LAZY_SYNC_EVERY`]; the next durable commit — any other writer's, or
//! [`RedbStore::sync_lazy`], which the server calls every [`super::LAZY_SYNC_EVERY`] and at
//! shutdown — makes it durable. A crash loses at most that second of empty check-ins, never
//! anything a durable writer was told was written, and the file opens at the last durable commit.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::tx::{self, decode, encode, KvPairs, KvRead, Table, Tx};
use super::{
    normalize_upn, AuditEntry, AuditStore, Cancelled, CertRecord, CertStore, CommandQueue,
    CommandRecord, Device, DeviceStore, Enqueued, EnrollOutcome, Round, SessionStore, StoreError,
    User, UserStore,
};

/// Name of the store file inside the data directory.
pub const FILE_NAME: &str = "store.redb";

/// redb page cache used by [`RedbStore::open`] (`--store-cache-mb`, default 128).
pub const DEFAULT_CACHE_BYTES: u64 = 128 << 20;

/// A writer's pending changes: `None` deletes.
type Overlay = BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>;

type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// A table opened in a write transaction.
type OpenTable<'a> = redb::Table<'a, &'static [u8], &'static [u8]>;

/// Internal bookkeeping (the next id to hand out).
const META: Def = TableDefinition::new("meta");
const NEXT_ID: &[u8] = b"next_id";

fn def(t: Table) -> Def {
    TableDefinition::new(t.name())
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        reason: e.to_string(),
    }
}

/// Counters of the commit path since the store was opened (for benches and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Commits that reached the disk.
    pub commits: u64,
    /// Writers whose changes those commits carried.
    pub writes: u64,
    /// Largest number of writers one commit carried.
    pub max_batch: u64,
    /// Commits that failed (none of their writers was acknowledged).
    pub failed: u64,
    /// Commits of lazy writers only, made without waiting for the disk (`Durability::None`;
    /// not counted in `commits`).
    pub lazy: u64,
    /// Writers that did not ask to wait for the disk (lazy rounds), whatever commit took them.
    pub lazy_writes: u64,
    /// Commits by the number of writers they carried: `by_size[i]` counts batches of more than
    /// 2^(i-1) and at most 2^i writers (`[0]`: one writer); the last slot counts every larger one.
    pub by_size: [u64; BATCH_BUCKETS],
}

/// Slots of [`CommitStats::by_size`]: 1, 2, 4, … 256 writers, and more.
pub const BATCH_BUCKETS: usize = 10;

/// The [`CommitStats::by_size`] slot of a batch of `writers` (at least 1).
pub fn batch_bucket(writers: u64) -> usize {
    let i = (u64::BITS - writers.saturating_sub(1).leading_zeros()) as usize;
    i.min(BATCH_BUCKETS - 1)
}

struct Batch {
    /// The transaction being filled, if any.
    open: Option<redb::WriteTransaction>,
    /// Number of the open (or last) batch.
    epoch: u64,
    /// Writers that joined the open batch.
    members: u64,
    /// A joined writer's changes could not be applied: the batch must not commit.
    broken: Option<String>,
    /// A commit is in flight (outside the lock).
    committing: bool,
    /// Writers registered and not yet applied.
    queued: u64,
    /// Highest batch whose outcome is known.
    done: u64,
    /// Outcomes of failed batches still awaited by some member (epoch → reason, members left).
    failed: HashMap<u64, (String, u64)>,
    /// Next id for [`RedbTx::next_id`].
    next_id: u64,
    /// A member of the open batch needs its writes on disk before it returns.
    sync: bool,
    /// When the last durable commit returned.
    last_sync: std::time::Instant,
    /// Lazy commits since then.
    unsynced: u64,
    stats: CommitStats,
}

struct Inner {
    db: redb::Database,
    batch: Mutex<Batch>,
    cv: Condvar,
    committer: Arc<Committer>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The committer thread holds the store only while it works; tell it to end.
        let mut q = self.committer.lock();
        q.closed = true;
        drop(q);
        self.committer.cv.notify_all();
    }
}

/// One writer handed to the committer thread.
trait Job: Send {
    /// Whether the writer waits for the disk.
    fn durable(&self) -> bool;
    /// Runs the writer's closure against the batch; `false` when it failed (it keeps its error
    /// and nothing it wrote is kept).
    fn run(&mut self, tx: &RedbTx<'_>) -> bool;
    /// Completes the caller's future: the closure's value once `batch` (the outcome of the
    /// commit that covered it) succeeded, else the error.
    fn finish(self: Box<Self>, batch: Option<&str>);
}

struct Pending<R, F> {
    f: Option<F>,
    durable: bool,
    out: Option<Result<R, StoreError>>,
    reply: tokio::sync::oneshot::Sender<Result<R, StoreError>>,
}

impl<R, F> Job for Pending<R, F>
where
    R: Send,
    F: FnOnce(&RedbTx<'_>) -> Result<R, StoreError> + Send,
{
    fn durable(&self) -> bool {
        self.durable
    }
    fn run(&mut self, tx: &RedbTx<'_>) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let r = f(tx);
        let ok = r.is_ok();
        self.out = Some(r);
        ok
    }
    fn finish(self: Box<Self>, batch: Option<&str>) {
        let r = match (self.out, batch) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(_)), Some(reason)) => Err(backend(reason)),
            (Some(Ok(v)), None) => Ok(v),
            (None, _) => Err(backend("a store operation panicked")),
        };
        // The caller may have stopped waiting (its request was dropped): nothing to tell.
        let _ = self.reply.send(r);
    }
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Box<dyn Job>>,
    /// The committer thread is running.
    running: bool,
    /// The store is gone: the thread ends.
    closed: bool,
}

/// The hand-off to the committer thread.
#[derive(Default)]
struct Committer {
    queue: Mutex<Queue>,
    cv: Condvar,
}

impl Committer {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The committer thread: takes what was handed in, commits it with the batch, completes it.
    fn run(self: Arc<Self>, store: std::sync::Weak<Inner>) {
        loop {
            let jobs = {
                let mut q = self.lock();
                while q.jobs.is_empty() && !q.closed {
                    q = self.cv.wait(q).unwrap_or_else(|p| p.into_inner());
                }
                if q.jobs.is_empty() {
                    q.running = false;
                    return;
                }
                std::mem::take(&mut q.jobs)
            };
            // The store is let go before any caller hears back: a caller that then drops its
            // last handle closes the file at once (and may open it again).
            let (jobs, failed) = match store.upgrade() {
                Some(inner) => RedbStore { inner }.write_jobs(jobs),
                None => (jobs, Some("the store was closed".to_string())),
            };
            for job in jobs {
                job.finish(failed.as_deref());
            }
        }
    }
}

/// A redb database holding every [`Table`], with group commit.
#[derive(Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

/// The view of one writer inside a batch: its reads see the batch so far plus its own writes;
/// its writes reach the batch only if it succeeds.
pub struct RedbTx<'a> {
    txn: &'a redb::WriteTransaction,
    /// Tables opened so far, kept open for the writer's life: redb's `open_table` looks the
    /// table up and its drop stages the root again, which per key was a large part of a write.
    tables: RefCell<BTreeMap<Table, OpenTable<'a>>>,
    writes: RefCell<Overlay>,
    next_id: RefCell<&'a mut u64>,
    took_id: RefCell<bool>,
}

impl<'a> RedbTx<'a> {
    /// A fresh id, greater than every id handed out before (also across restarts).
    pub fn next_id(&self) -> u64 {
        let mut n = self.next_id.borrow_mut();
        let id = **n;
        **n += 1;
        *self.took_id.borrow_mut() = true;
        id
    }

    /// Runs `f` on table `t`, opening it once per writer.
    fn with_table<R>(
        &self,
        t: Table,
        f: impl FnOnce(
            &mut redb::Table<'a, &'static [u8], &'static [u8]>,
        ) -> Result<R, redb::StorageError>,
    ) -> Result<R, StoreError> {
        let mut tables = self.tables.borrow_mut();
        let table = match tables.entry(t) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(self.txn.open_table(def(t)).map_err(backend)?)
            }
        };
        f(table).map_err(backend)
    }

    fn apply(self) -> Result<(), StoreError> {
        for ((t, k), v) in std::mem::take(&mut *self.writes.borrow_mut()) {
            self.with_table(t, |table| {
                match v {
                    Some(v) => table.insert(k.as_slice(), v.as_slice()).map(drop)?,
                    None => table.remove(k.as_slice()).map(drop)?,
                };
                Ok(())
            })?;
        }
        self.tables.borrow_mut().clear();
        if self.took_id.into_inner() {
            let next = **self.next_id.borrow();
            let mut meta = self.txn.open_table(META).map_err(backend)?;
            meta.insert(NEXT_ID, next.to_be_bytes().as_slice())
                .map_err(backend)?;
        }
        Ok(())
    }
}

impl Tx for RedbTx<'_> {
    type E = StoreError;
    fn get(&self, t: Table, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.writes.borrow().get(&(t, k.to_vec())) {
            return Ok(v.clone());
        }
        self.with_table(t, |table| Ok(table.get(k)?.map(|g| g.value().to_vec())))
    }
    fn insert(&self, t: Table, k: &[u8], v: Vec<u8>) -> Result<(), StoreError> {
        self.writes.borrow_mut().insert((t, k.to_vec()), Some(v));
        Ok(())
    }
    fn remove(&self, t: Table, k: &[u8]) -> Result<(), StoreError> {
        self.writes.borrow_mut().insert((t, k.to_vec()), None);
        Ok(())
    }
    fn abort(e: StoreError) -> StoreError {
        e
    }
}

impl RedbStore {
    /// Opens (or creates) `<dir>/store.redb` with a [`DEFAULT_CACHE_BYTES`] page cache.
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) `<dir>/store.redb`; redb keeps up to `cache_bytes` of pages in memory.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<RedbStore, StoreError> {
        crate::fsio::create_dir(dir).map_err(backend)?;
        let path = dir.join(FILE_NAME);
        let created = !path.exists();
        let mut builder = redb::Database::builder();
        builder.set_cache_size(usize::try_from(cache_bytes).unwrap_or(usize::MAX));
        let db = if std::env::var(super::powercut::ENV).as_deref() == Ok("1") {
            tracing::warn!(
                path = %path.display(),
                "store: power-cut test mode ({}=1): writes reach the file only at a sync",
                super::powercut::ENV
            );
            let storage = super::powercut::SyncOnlyFile::open(&path).map_err(backend)?;
            builder.create_with_backend(storage).map_err(backend)?
        } else {
            builder.create(&path).map_err(backend)?
        };
        if created {
            // The new file's directory entry must survive a power cut too.
            crate::fsio::sync_dir(dir).map_err(backend)?;
        }
        Self::from_db(db)
    }

    /// Opens a database on a caller-supplied storage (tests simulate power cuts with one).
    pub fn open_with_backend(
        storage: impl redb::StorageBackend,
        cache_bytes: u64,
    ) -> Result<RedbStore, StoreError> {
        let db = redb::Database::builder()
            .set_cache_size(usize::try_from(cache_bytes).unwrap_or(usize::MAX))
            .create_with_backend(storage)
            .map_err(backend)?;
        Self::from_db(db)
    }

    /// A throw-away in-memory database for tests.
    pub fn temporary() -> Result<RedbStore, StoreError> {
        Self::open_with_backend(redb::backends::InMemoryBackend::new(), 16 << 20)
    }

    fn from_db(db: redb::Database) -> Result<RedbStore, StoreError> {
        // Create every table once, so readers never meet a missing one.
        let w = db.begin_write().map_err(backend)?;
        for t in Table::ALL {
            w.open_table(def(t)).map_err(backend)?;
        }
        let next_id = {
            let meta = w.open_table(META).map_err(backend)?;
            let v = meta.get(NEXT_ID).map_err(backend)?;
            v.and_then(|g| g.value().try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(1)
        };
        w.commit().map_err(backend)?;
        Ok(RedbStore {
            inner: Arc::new(Inner {
                db,
                batch: Mutex::new(Batch {
                    open: None,
                    epoch: 0,
                    members: 0,
                    broken: None,
                    committing: false,
                    queued: 0,
                    done: 0,
                    failed: HashMap::new(),
                    next_id,
                    sync: false,
                    last_sync: std::time::Instant::now(),
                    unsynced: 0,
                    stats: CommitStats::default(),
                }),
                cv: Condvar::new(),
                committer: Arc::new(Committer::default()),
            }),
        })
    }

    /// Hands `f` to the committer thread (see the module documentation); the receiver gets
    /// what [`RedbStore::write_with`] would have returned.
    fn submit<R, F>(
        &self,
        durable: bool,
        f: F,
    ) -> tokio::sync::oneshot::Receiver<Result<R, StoreError>>
    where
        R: Send + 'static,
        F: FnOnce(&RedbTx<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending {
            f: Some(f),
            durable,
            out: None,
            reply,
        });
        let c = &self.inner.committer;
        let mut q = c.lock();
        if q.closed {
            drop(q);
            job.finish(Some("the store was closed"));
            return rx;
        }
        q.jobs.push(job);
        if !q.running {
            let weak = Arc::downgrade(&self.inner);
            let thread = c.clone();
            match std::thread::Builder::new()
                .name("winmdm-committer".into())
                .spawn(move || thread.run(weak))
            {
                Ok(_) => q.running = true,
                Err(e) => {
                    tracing::error!(error = %e, "store: the committer thread could not start");
                    let jobs = std::mem::take(&mut q.jobs);
                    drop(q);
                    for j in jobs {
                        j.finish(Some("the store's committer thread could not start"));
                    }
                    return rx;
                }
            }
        }
        drop(q);
        c.cv.notify_one();
        rx
    }

    /// The committer's turn: `jobs` join the batch as writers of their own (as
    /// [`RedbStore::write_with`] does for one); returns them with the failure of the commit
    /// that covered them, if it failed, for the caller to complete.
    fn write_jobs(&self, mut jobs: Vec<Box<dyn Job>>) -> (Vec<Box<dyn Job>>, Option<String>) {
        let mut g = self.enter();
        let mut joined = 0;
        for job in jobs.iter_mut() {
            let durable = job.durable();
            let applied = self.apply(&mut g, |tx| {
                if job.run(tx) {
                    Ok(())
                } else {
                    Err(backend("failed"))
                }
            });
            if applied.is_ok() {
                Self::joined(&mut g, durable);
                joined += 1;
            }
        }
        let failed = self.leave(g, joined);
        (jobs, failed)
    }

    /// Registers a writer with the batch being filled, once no commit is in flight.
    fn enter(&self) -> MutexGuard<'_, Batch> {
        let mut g = self.lock();
        g.queued += 1;
        while g.committing {
            g = self.wait(g);
        }
        g
    }

    /// Notes that a writer's changes joined the open batch.
    fn joined(g: &mut MutexGuard<'_, Batch>, durable: bool) {
        if durable {
            g.sync = true;
        } else {
            g.stats.lazy_writes += 1;
        }
    }

    /// Unregisters a writer whose `joined` closures joined the open batch: the last writer out
    /// commits it; then, if any joined, waits for that commit and returns its failure, if any.
    fn leave<'a>(&'a self, mut g: MutexGuard<'a, Batch>, joined: u64) -> Option<String> {
        g.queued -= 1;
        let epoch = g.epoch;
        if g.queued == 0 {
            g = self.commit_open(g);
        }
        if joined == 0 {
            return None;
        }
        while g.done < epoch {
            g = self.wait(g);
        }
        let (reason, left) = g.failed.get_mut(&epoch)?;
        let reason = reason.clone();
        *left = left.saturating_sub(joined);
        if *left == 0 {
            g.failed.remove(&epoch);
        }
        Some(reason)
    }

    /// Counters of the commit path since open.
    pub fn commit_stats(&self) -> CommitStats {
        self.lock().stats
    }

    /// Makes the lazy commits since the last durable one durable (one empty durable commit);
    /// `Ok(false)` when there were none.
    pub fn sync_lazy(&self) -> Result<bool, StoreError> {
        if self.lock().unsynced == 0 {
            return Ok(false);
        }
        self.write(|_| Ok(()))?;
        Ok(true)
    }

    fn lock(&self) -> MutexGuard<'_, Batch> {
        self.inner.batch.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, g: MutexGuard<'a, Batch>) -> MutexGuard<'a, Batch> {
        self.inner.cv.wait(g).unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` inside the batch being filled and returns once a commit that covers its writes
    /// is on disk. If `f` fails, nothing it wrote is kept and the batch goes on without it.
    pub fn write<R>(
        &self,
        f: impl FnOnce(&RedbTx<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.write_with(true, f)
    }

    /// [`RedbStore::write`]; a `durable: false` writer is lazy (see the module documentation):
    /// it returns once a commit covering its writes made them visible, on disk or not.
    pub fn write_with<R>(
        &self,
        durable: bool,
        f: impl FnOnce(&RedbTx<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut g = self.enter();
        let value = match self.apply(&mut g, f) {
            Ok(v) => v,
            Err(e) => {
                // Our own failure; others may still be waiting for this batch to commit.
                self.leave(g, 0);
                return Err(e);
            }
        };
        Self::joined(&mut g, durable);
        match self.leave(g, 1) {
            Some(reason) => Err(StoreError::Backend { reason }),
            None => Ok(value),
        }
    }

    /// Runs `f` against the open transaction (opening one if needed); `Ok` when it joined.
    fn apply<R>(
        &self,
        g: &mut MutexGuard<'_, Batch>,
        f: impl FnOnce(&RedbTx<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let b: &mut Batch = g;
        if b.open.is_none() {
            b.open = Some(self.inner.db.begin_write().map_err(backend)?);
            b.epoch += 1;
            b.members = 0;
            b.broken = None;
            b.sync = false;
        }
        let Some(txn) = b.open.as_ref() else {
            return Err(backend("no open transaction"));
        };
        let tx = RedbTx {
            txn,
            tables: RefCell::new(BTreeMap::new()),
            writes: RefCell::new(BTreeMap::new()),
            next_id: RefCell::new(&mut b.next_id),
            took_id: RefCell::new(false),
        };
        // A panic in `f` must not leave this writer registered (the batch would never commit).
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&tx)))
            .map_err(|_| backend("a store operation panicked"))??;
        if let Err(e) = tx.apply() {
            // Part of our writes may be in the transaction: the whole batch must abort.
            tracing::error!(error = %e, "store: applying a write to the batch failed; the batch is aborted");
            b.broken = Some(e.to_string());
        }
        b.members += 1;
        Ok(r)
    }

    /// Commits (or, if broken, aborts) the open batch, if it has members, outside the lock.
    fn commit_open<'a>(&'a self, mut g: MutexGuard<'a, Batch>) -> MutexGuard<'a, Batch> {
        let Some(mut txn) = g.open.take() else {
            return g;
        };
        // Lazy writers only, and the disk saw a commit recently: no sync for this one.
        let lazy = !g.sync && g.last_sync.elapsed() < super::LAZY_SYNC_EVERY;
        let lazy = lazy && txn.set_durability(redb::Durability::None).is_ok();
        let epoch = g.epoch;
        let members = g.members;
        if members == 0 {
            drop(txn);
            g.done = epoch;
            return g;
        }
        let broken = g.broken.take();
        g.committing = true;
        drop(g);
        let outcome = match broken {
            Some(reason) => {
                let _ = txn.abort();
                Err(reason)
            }
            None => txn.commit().map_err(|e| e.to_string()),
        };
        let mut g = self.lock();
        g.committing = false;
        g.done = epoch;
        match outcome {
            Ok(()) if lazy => {
                g.unsynced += 1;
                g.stats.lazy += 1;
                g.stats.writes += members;
            }
            Ok(()) => {
                g.unsynced = 0;
                g.last_sync = std::time::Instant::now();
                g.stats.commits += 1;
                g.stats.writes += members;
                g.stats.max_batch = g.stats.max_batch.max(members);
                g.stats.by_size[batch_bucket(members)] += 1;
            }
            Err(reason) => {
                g.stats.failed += 1;
                tracing::error!(error = %reason, writers = members, "store: commit failed; no writer of the batch is acknowledged");
                g.failed.insert(epoch, (reason, members));
            }
        }
        self.inner.cv.notify_all();
        g
    }

    /// Runs `f` on each command, its `seq` set first, all in one write.
    fn enqueue_each<R>(
        &self,
        mut cmds: Vec<CommandRecord>,
        f: impl Fn(&RedbTx<'_>, &CommandRecord) -> Result<R, StoreError>,
    ) -> Result<Vec<R>, StoreError> {
        self.write(|x| {
            cmds.iter_mut()
                .map(|c| {
                    c.seq = x.next_id();
                    f(x, c)
                })
                .collect()
        })
    }

    fn read_txn(&self) -> Result<redb::ReadTransaction, StoreError> {
        self.inner.db.begin_read().map_err(backend)
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        t: Table,
        what: &'static str,
        k: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match KvRead::get(self, t, k)? {
            None => Ok(None),
            Some(v) => decode(what, &v).map(Some),
        }
    }

    /// Number of records in `t`.
    pub fn count(&self, t: Table) -> Result<u64, StoreError> {
        let r = self.read_txn()?;
        let table = r.open_table(def(t)).map_err(backend)?;
        table.len().map_err(backend)
    }
}

impl tx::RawImport for RedbStore {
    fn import(&self, t: Table, kv: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StoreError> {
        self.write(|x| {
            for (k, v) in kv {
                x.insert(t, k, v.clone())?;
            }
            Ok(())
        })
    }

    fn count(&self, t: Table) -> Result<u64, StoreError> {
        RedbStore::count(self, t)
    }

    fn raise_ids_above(&self, floor: u64) -> Result<(), StoreError> {
        self.write(|x| {
            let mut n = x.next_id.borrow_mut();
            **n = (**n).max(floor.saturating_add(1));
            *x.took_id.borrow_mut() = true;
            Ok(())
        })
    }
}

/// One redb read transaction: every read sees the store as it was when it began.
pub struct RedbSnapshot(redb::ReadTransaction);

impl KvRead for RedbSnapshot {
    fn get(&self, t: Table, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        read_get(&self.0, t, k)
    }
    fn scan_prefix(&self, t: Table, prefix: &[u8]) -> Result<KvPairs, StoreError> {
        read_prefix(&self.0, t, prefix)
    }
    fn scan_after(
        &self,
        t: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KvPairs, StoreError> {
        read_after(&self.0, t, after, limit)
    }
}

impl super::Snapshots for RedbStore {
    fn snapshot(&self) -> Result<Option<Box<dyn KvRead + '_>>, StoreError> {
        Ok(Some(Box::new(RedbSnapshot(self.read_txn()?))))
    }
}

fn read_get(r: &redb::ReadTransaction, t: Table, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    let table = r.open_table(def(t)).map_err(backend)?;
    let v = table.get(k).map_err(backend)?;
    Ok(v.map(|g| g.value().to_vec()))
}

fn read_prefix(r: &redb::ReadTransaction, t: Table, prefix: &[u8]) -> Result<KvPairs, StoreError> {
    let table = r.open_table(def(t)).map_err(backend)?;
    let mut out = Vec::new();
    for item in table.range(prefix..).map_err(backend)? {
        let (k, v) = item.map_err(backend)?;
        if !k.value().starts_with(prefix) {
            break;
        }
        out.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok(out)
}

fn read_after(
    r: &redb::ReadTransaction,
    t: Table,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<KvPairs, StoreError> {
    use std::ops::Bound;
    let table = r.open_table(def(t)).map_err(backend)?;
    let start: Bound<&[u8]> = match after {
        Some(a) => Bound::Excluded(a),
        None => Bound::Unbounded,
    };
    let mut out = Vec::new();
    for item in table
        .range::<&[u8]>((start, Bound::Unbounded))
        .map_err(backend)?
        .take(limit)
    {
        let (k, v) = item.map_err(backend)?;
        out.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok(out)
}

impl KvRead for RedbStore {
    fn get(&self, t: Table, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        read_get(&self.read_txn()?, t, k)
    }

    fn scan_prefix(&self, t: Table, prefix: &[u8]) -> Result<KvPairs, StoreError> {
        read_prefix(&self.read_txn()?, t, prefix)
    }

    fn scan_after(
        &self,
        t: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KvPairs, StoreError> {
        read_after(&self.read_txn()?, t, after, limit)
    }
}

impl UserStore for RedbStore {
    fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let key = normalize_upn(&user.upn);
        self.write(|x| {
            if x.get(Table::Users, key.as_bytes())?.is_some() {
                return Err(StoreError::AlreadyExists { what: "user" });
            }
            x.insert(Table::Users, key.as_bytes(), encode(&super::with_id(user)))
        })
    }

    fn get_user(&self, upn: &str) -> Result<Option<User>, StoreError> {
        self.get_json(Table::Users, "user", normalize_upn(upn).as_bytes())
    }

    fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.scan_prefix(Table::Users, b"")?
            .into_iter()
            .map(|(_, v)| decode("user", &v))
            .collect()
    }

    fn delete_user(&self, upn: &str) -> Result<bool, StoreError> {
        let key = normalize_upn(upn);
        self.write(|x| {
            let existed = x.get(Table::Users, key.as_bytes())?.is_some();
            if existed {
                x.remove(Table::Users, key.as_bytes())?;
            }
            Ok(existed)
        })
    }

    fn update_user(&self, user: &User) -> Result<bool, StoreError> {
        self.write(|x| tx::update_user(x, user))
    }
}

impl DeviceStore for RedbStore {
    fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError> {
        self.get_json(Table::Devices, "device", device_id.as_bytes())
    }

    fn get_device_binding(
        &self,
        device_id: &str,
    ) -> Result<Option<super::DeviceBinding>, StoreError> {
        self.get_json(Table::Devices, "device", device_id.as_bytes())
    }

    fn list_devices(&self, after: Option<&str>, limit: usize) -> Result<Vec<Device>, StoreError> {
        self.scan_after(Table::Devices, after.map(str::as_bytes), limit)?
            .into_iter()
            .map(|(_, v)| decode("device", &v))
            .collect()
    }

    fn put_device(&self, device: &Device) -> Result<(), StoreError> {
        self.write(|x| x.insert(Table::Devices, device.device_id.as_bytes(), encode(device)))
    }

    fn record_enrollment(
        &self,
        device: &Device,
        cert: &CertRecord,
        now: i64,
        max_owned: Option<usize>,
    ) -> Result<EnrollOutcome, StoreError> {
        self.write(|x| tx::record_enrollment(x, device, cert, now, max_owned))
    }

    fn delete_device(&self, device_id: &str, now: i64) -> Result<bool, StoreError> {
        let (queued, sessions) = tx::device_leftovers(self, device_id)?;
        self.write(|x| tx::delete_device(x, device_id, &queued, &sessions, now))
    }

    fn record_renewal(
        &self,
        r: &super::RenewalCommit,
        now: i64,
    ) -> Result<super::RenewOutcome, StoreError> {
        self.write(|x| tx::record_renewal(x, r, now))
    }
}

impl AuditStore for RedbStore {
    fn append_audit(&self, mut entry: AuditEntry) -> Result<u64, StoreError> {
        self.write(|x| {
            entry.id = x.next_id();
            x.insert(Table::Audit, &entry.id.to_be_bytes(), encode(&entry))?;
            Ok(entry.id)
        })
    }

    fn list_audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let after = after.map(u64::to_be_bytes);
        let kv = self.scan_after(Table::Audit, after.as_ref().map(|a| a.as_slice()), limit)?;
        tx::audit_entries(kv)
    }
}

impl CertStore for RedbStore {
    fn get_cert(&self, serial: &str) -> Result<Option<CertRecord>, StoreError> {
        self.get_json(Table::Certs, "certificate", serial.as_bytes())
    }

    fn put_cert(&self, cert: &CertRecord) -> Result<(), StoreError> {
        self.write(|x| x.insert(Table::Certs, cert.serial.as_bytes(), encode(cert)))
    }

    fn revoke_cert(&self, serial: &str, reason: &str, now: i64) -> Result<bool, StoreError> {
        self.write(|x| {
            if x.get(Table::Certs, serial.as_bytes())?.is_none() {
                return Ok(false);
            }
            tx::revoke(x, serial, reason, now)?;
            Ok(true)
        })
    }

    fn list_revoked(&self) -> Result<Vec<CertRecord>, StoreError> {
        let mut out = Vec::new();
        for (k, _) in self.scan_prefix(Table::Revoked, b"")? {
            if let Some(c) = self.get_json(Table::Certs, "certificate", &k)? {
                out.push(c);
            }
        }
        Ok(out)
    }

    fn count_certs(&self) -> Result<u64, StoreError> {
        self.count(Table::Certs)
    }
}

impl CommandQueue for RedbStore {
    fn enqueue(&self, mut cmd: CommandRecord) -> Result<Enqueued, StoreError> {
        self.write(|x| {
            cmd.seq = x.next_id();
            tx::enqueue(x, &cmd)
        })
    }

    fn enqueue_many(&self, cmds: Vec<CommandRecord>) -> Result<Vec<Enqueued>, StoreError> {
        self.enqueue_each(cmds, |x, c| tx::enqueue(x, c))
    }

    fn enqueue_gated_many(
        &self,
        cmds: Vec<CommandRecord>,
    ) -> Result<Vec<Result<Enqueued, tx::Refusal>>, StoreError> {
        self.enqueue_each(cmds, |x, c| tx::enqueue_gated(x, c))
    }

    fn apply_changes(
        &self,
        mut c: tx::ChangeSet,
        now: i64,
    ) -> Result<Option<tx::Applied>, StoreError> {
        self.write(|x| {
            for cmd in c.commands.iter_mut() {
                cmd.seq = x.next_id();
            }
            tx::apply_changes(x, &c, now)
        })
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
        self.write(|t| tx::cancel_many(t, ids, now))
    }

    fn cancel(&self, device_id: &str, command_id: &str, now: i64) -> Result<Cancelled, StoreError> {
        self.write(|x| tx::cancel(x, device_id, command_id, now))
    }

    fn clear(&self, device_id: &str, now: i64) -> Result<usize, StoreError> {
        let ids = tx::queued_ids(self, device_id)?;
        self.write(|t| tx::cancel_many(t, &ids, now))
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
        self.write(|x| tx::delete_finished(x, ids))
    }
}

impl SessionStore for RedbStore {
    fn get_session(
        &self,
        device_id: &str,
        session_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        KvRead::get(
            self,
            Table::Sessions,
            &super::device_key(device_id, session_id.as_bytes()),
        )
    }

    fn commit_round(&self, round: &Round, now: i64) -> Result<super::RoundCommit, StoreError> {
        self.write_with(!round.lazy_sync, |x| tx::commit_round(x, round, now))
    }

    fn commit_round_async(&self, round: Round, now: i64) -> super::StoreFuture<super::RoundCommit> {
        let rx = self.submit(!round.lazy_sync, move |x| tx::commit_round(x, &round, now));
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(backend("the store's committer stopped")))
        })
    }

    fn reads_inline(&self) -> bool {
        true
    }

    fn sync_lazy(&self) -> Result<bool, StoreError> {
        RedbStore::sync_lazy(self)
    }
}

impl super::RecordStore for RedbStore {
    fn get_record(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        KvRead::get(self, Table::Records, &super::records::record_key(kind, key))
    }

    fn scan_records(
        &self,
        kind: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = super::records::record_key(kind, "");
        let start = match after {
            Some(a) => super::records::record_key(kind, a),
            None => prefix.clone(),
        };
        let r = self.read_txn()?;
        let table = r.open_table(def(Table::Records)).map_err(backend)?;
        let mut out = Vec::new();
        for item in table.range(start.as_slice()..).map_err(backend)? {
            let (k, v) = item.map_err(backend)?;
            let k = k.value();
            if after.is_some() && k == start.as_slice() {
                continue;
            }
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            out.push((super::records::key_part(kind, k)?, v.value().to_vec()));
        }
        Ok(out)
    }

    fn apply_records(&self, ops: &[super::RecordOp]) -> Result<bool, StoreError> {
        self.write(|x| super::records::apply_in_tx(x, ops))
    }
}

#[cfg(test)]
mod batch_bucket_tests {
    use super::*;

    #[test]
    fn batch_sizes_fall_in_power_of_two_slots() {
        assert_eq!(batch_bucket(1), 0);
        assert_eq!(batch_bucket(2), 1);
        assert_eq!(batch_bucket(3), 2);
        assert_eq!(batch_bucket(4), 2);
        assert_eq!(batch_bucket(5), 3);
        assert_eq!(batch_bucket(256), 8);
        assert_eq!(batch_bucket(257), 9);
        assert_eq!(batch_bucket(u64::MAX), 9);
    }
}
