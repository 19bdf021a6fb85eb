//! Background jobs: fleet-wide work that does not fit in an admin request.
//!
//! A job is a record in the store (`job` kind) with its progress (`done`/`total`), the cursor
//! where it stands, its errors and a **lease**: the node running it writes `lease = (node,
//! until)` with a compare-and-set, renews it with every step, and only a job whose lease is
//! absent or expired may be claimed. So exactly one node works on a job at a time, on one
//! server or on several sharing a store, and a job whose node died (crash, power cut, restart)
//! is taken up again by whichever node's sweep sees the lease expire, from the last saved
//! cursor. Every step is idempotent (reconciling a device twice changes nothing), so redoing the
//! step a crash interrupted is harmless.
//!
//! Today's job kind: reconciling every device a profile concerns after it is assigned,
//! unassigned, edited, re-pushed or deleted (`profiles::reconcile::profile_step`).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::groups::GroupError;
use crate::metrics::{JobEvent, Sweep, SweepOutcome};
use crate::profiles::reconcile::{self, ProfileCursor};
use crate::store::records::Kind;
use crate::store::StoreError;

/// The job records.
pub const JOBS: Kind<Job> = Kind::new("job");

/// How long a claim holds without renewal (seconds).
pub const LEASE_SECS: i64 = 30;
/// Devices per step (one progress write each).
pub const STEP: usize = 2_000;
/// Errors kept on a job.
pub const MAX_ERRORS: usize = 20;
/// Consecutive failed attempts before a job is given up (`failed`).
pub const MAX_ATTEMPTS: u32 = 5;
/// Finished jobs are forgotten after this long (seconds).
pub const KEEP_FINISHED_SECS: i64 = 7 * 86_400;
/// How often each node looks for jobs to take up.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// What a job does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobKind {
    /// Reconcile every device profile `profile_id` concerns.
    ReconcileProfile {
        /// The profile.
        profile_id: String,
        /// What caused it (`assign`, `unassign`, `update`, `push`, `delete`).
        reason: String,
    },
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a node.
    Queued,
    /// A node holds it (or held it until its lease expired).
    Running,
    /// Finished.
    Done,
    /// Given up after [`MAX_ATTEMPTS`] failed attempts.
    Failed,
}

/// A node's claim on a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The node (`App::node_id`).
    pub node: String,
    /// Valid until (Unix seconds).
    pub until: i64,
}

/// A background job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Random id.
    pub id: String,
    /// What it does.
    pub kind: JobKind,
    /// Where it is.
    pub state: JobState,
    /// Work items in all (device visits for a reconciliation), known once a node started it.
    pub total: u64,
    /// Work items done.
    pub done: u64,
    /// Commands queued so far.
    pub queued: u64,
    /// Errors, most recent last (at most [`MAX_ERRORS`]).
    pub errors: Vec<String>,
    /// Failed attempts in a row.
    #[serde(default)]
    pub attempts: u32,
    /// Who created it (the admin token's name).
    pub actor: String,
    /// Created (Unix seconds).
    pub created_at: i64,
    /// Last progress (Unix seconds).
    pub updated_at: i64,
    /// Finished (Unix seconds).
    pub finished_at: Option<i64>,
    /// The current claim.
    pub lease: Option<Lease>,
    /// Where a reconciliation stands.
    #[serde(default)]
    pub cursor: ProfileCursor,
    /// `total` was computed.
    #[serde(default)]
    pub counted: bool,
}

impl Job {
    fn finished(&self) -> bool {
        matches!(self.state, JobState::Done | JobState::Failed)
    }

    /// Nobody holds it: never claimed, released, or its holder's lease ran out (a node that
    /// died, or this node after a failed step).
    fn claimable(&self, now: i64) -> bool {
        !self.finished() && self.lease.as_ref().is_none_or(|l| l.until < now)
    }

    fn held_by(&self, node: &str) -> bool {
        !self.finished() && self.lease.as_ref().is_some_and(|l| l.node == node)
    }
}

/// The job as the admin API shows it (`GET /api/v1/jobs/{id}`): no lease or cursor.
pub fn view(j: &Job) -> serde_json::Value {
    serde_json::json!({
        "id": j.id,
        "kind": j.kind,
        "state": j.state,
        "total": if j.counted { Some(j.total) } else { None },
        "done": j.done,
        "queued": j.queued,
        "errors": j.errors,
        "actor": j.actor,
        "created_at": j.created_at,
        "updated_at": j.updated_at,
        "finished_at": j.finished_at,
        "url": format!("/api/v1/jobs/{}", j.id),
    })
}

/// Creates a queued job.
pub fn create(app: &App, kind: JobKind, actor: &str) -> Result<Job, StoreError> {
    let now = app.clock.now_unix();
    let job = Job {
        id: crate::clock::random_hex(16),
        kind,
        state: JobState::Queued,
        total: 0,
        done: 0,
        queued: 0,
        errors: Vec::new(),
        attempts: 0,
        actor: actor.to_string(),
        created_at: now,
        updated_at: now,
        finished_at: None,
        lease: None,
        cursor: ProfileCursor::default(),
        counted: false,
    };
    JOBS.put(app.store.records(), &job.id, &job)?;
    tracing::info!(job_id = %job.id, kind = ?job.kind, "job queued");
    Ok(job)
}

/// A job by id.
pub fn get(app: &App, id: &str) -> Result<Option<Job>, StoreError> {
    JOBS.get(app.store.records(), id)
}

/// Jobs, in id order, after `after` (at most `limit`).
pub fn list(app: &App, after: Option<&str>, limit: usize) -> Result<Vec<Job>, StoreError> {
    Ok(JOBS
        .list(app.store.records(), after, limit)?
        .into_iter()
        .map(|(_, j)| j)
        .collect())
}

/// Takes the job for this node if nobody holds it; `None` if another node does or it is over.
pub fn claim(app: &App, id: &str) -> Result<Option<Job>, StoreError> {
    let node = app.node_id.as_str();
    let now = app.clock.now_unix();
    let mut claimed = false;
    let job = JOBS.update(app.store.records(), id, |j| {
        claimed = false;
        let Some(mut j) = j else { return Ok(None) };
        if j.claimable(now) {
            j.lease = Some(Lease {
                node: node.to_string(),
                until: now + LEASE_SECS,
            });
            j.state = JobState::Running;
            claimed = true;
        }
        Ok(Some(j))
    })?;
    Ok(job.filter(|_| claimed))
}

/// Writes `j`'s progress if this node still holds the job (renewing the lease); `false` when
/// the lease was lost (another node took over: stop).
fn save(app: &App, j: &Job) -> Result<bool, StoreError> {
    let node = app.node_id.as_str();
    let now = app.clock.now_unix();
    let mut kept = false;
    JOBS.update(app.store.records(), &j.id, |cur| {
        kept = false;
        let Some(cur) = cur else { return Ok(None) };
        if !cur.held_by(node) {
            return Ok(Some(cur));
        }
        let mut next = j.clone();
        next.updated_at = now;
        next.lease = (!next.finished()).then(|| Lease {
            node: node.to_string(),
            until: now + LEASE_SECS,
        });
        kept = true;
        Ok(Some(next))
    })?;
    Ok(kept)
}

fn push_error(j: &mut Job, e: String) {
    j.errors.push(e);
    if j.errors.len() > MAX_ERRORS {
        let cut = j.errors.len() - MAX_ERRORS;
        j.errors.drain(..cut);
    }
}

/// Runs a claimed job to its end on this thread (blocking). Returns the job as last saved.
pub fn run_claimed(app: &App, j: Job) -> Result<Job, StoreError> {
    app.metrics.job(JobEvent::Started);
    let r = run_steps(app, j);
    if r.is_err() {
        app.metrics.job_paused();
    }
    r
}

fn run_steps(app: &App, mut j: Job) -> Result<Job, StoreError> {
    let JobKind::ReconcileProfile { profile_id, .. } = j.kind.clone();
    loop {
        let step = (|| -> Result<(), GroupError> {
            if !j.counted {
                j.total = reconcile::profile_visits(app, &profile_id)?;
                j.counted = true;
                return Ok(());
            }
            let (visited, queued) = reconcile::profile_step(app, &profile_id, &mut j.cursor, STEP)?;
            j.done += visited as u64;
            j.queued += queued as u64;
            Ok(())
        })();
        match step {
            Ok(()) => {
                j.attempts = 0;
                if j.cursor.finished {
                    j.state = JobState::Done;
                    j.total = j.total.max(j.done);
                    j.finished_at = Some(app.clock.now_unix());
                }
            }
            Err(e) => {
                j.attempts += 1;
                app.metrics.job(JobEvent::StepFailed);
                tracing::warn!(job_id = %j.id, attempt = j.attempts, error = %e, "job step failed");
                push_error(&mut j, e.to_string());
                if j.attempts >= MAX_ATTEMPTS {
                    j.state = JobState::Failed;
                    j.finished_at = Some(app.clock.now_unix());
                }
            }
        }
        if !save(app, &j)? {
            tracing::warn!(job_id = %j.id, "job lease lost to another node; stopping here");
            app.metrics.job(JobEvent::LeaseLost);
            return Ok(j);
        }
        if j.finished() {
            tracing::info!(job_id = %j.id, state = ?j.state, done = j.done, total = j.total, queued = j.queued, "job finished");
            app.metrics.job(if j.state == JobState::Done {
                JobEvent::Done
            } else {
                JobEvent::Failed
            });
            return Ok(j);
        }
        if j.attempts > 0 {
            // Let the sweep retry later rather than spinning on a failing store.
            app.metrics.job_paused();
            return Ok(j);
        }
    }
}

/// Claims and runs job `id` on a blocking thread, if no node holds it.
pub fn spawn(app: Arc<App>, id: String) {
    tokio::task::spawn_blocking(move || match claim(&app, &id) {
        Ok(Some(j)) => run_logged(&app, j),
        Ok(None) => {}
        Err(e) => tracing::error!(job_id = %id, error = %e, "job could not be claimed"),
    });
}

/// Runs a job this node claimed to its end, logging a failure to save.
fn run_logged(app: &App, j: Job) {
    let id = j.id.clone();
    if let Err(e) = run_claimed(app, j) {
        tracing::error!(job_id = %id, error = %e, "job could not save its progress");
    }
}

/// One pass of the sweep: claims every unfinished job nobody holds and runs it on a blocking
/// thread, forgets old finished ones. Returns how many jobs this node took up: the claim is made
/// here (a compare-and-set), so nodes sweeping at the same moment never both count — or both
/// start — the same job.
pub fn sweep(app: &Arc<App>) -> Result<usize, StoreError> {
    let started = std::time::Instant::now();
    let r = sweep_once(app);
    let outcome = if r.is_ok() {
        SweepOutcome::Ok
    } else {
        SweepOutcome::Error
    };
    app.metrics.sweep(Sweep::Jobs, outcome, started.elapsed());
    r
}

fn sweep_once(app: &Arc<App>) -> Result<usize, StoreError> {
    let now = app.clock.now_unix();
    let mut started = 0;
    let mut after: Option<String> = None;
    loop {
        let page = JOBS.list(app.store.records(), after.as_deref(), 500)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (id, j) in page {
            if j.finished() {
                if j.finished_at.is_some_and(|t| t + KEEP_FINISHED_SECS < now) {
                    JOBS.delete(app.store.records(), &id)?;
                }
            } else if j.claimable(now) {
                if let Some(j) = claim(app, &id)? {
                    let app = app.clone();
                    tokio::task::spawn_blocking(move || run_logged(&app, j));
                    started += 1;
                }
            }
        }
    }
    Ok(started)
}

/// The sweep loop of a node: every [`SWEEP_EVERY`] until `stop` turns true.
pub async fn run(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let a = app.clone();
        match tokio::task::spawn_blocking(move || sweep(&a)).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(jobs = n, "job sweep took up jobs"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "job sweep failed"),
            Err(e) => tracing::error!(error = %e, "job sweep panicked"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// Starts a job for `kind` and waits up to `wait` for it to finish: `Ok(job)` as it stands then
/// (finished, or still running in the background).
pub async fn start_and_wait(
    app: Arc<App>,
    kind: JobKind,
    actor: String,
    wait: Duration,
) -> Result<Job, StoreError> {
    let a = app.clone();
    let job = tokio::task::spawn_blocking(move || create(&a, kind, &actor))
        .await
        .map_err(|e| StoreError::Backend {
            reason: e.to_string(),
        })??;
    spawn(app.clone(), job.id.clone());
    let deadline = tokio::time::Instant::now() + wait;
    let mut last = job;
    loop {
        let a = app.clone();
        let id = last.id.clone();
        if let Some(j) = tokio::task::spawn_blocking(move || get(&a, &id))
            .await
            .map_err(|e| StoreError::Backend {
                reason: e.to_string(),
            })??
        {
            last = j;
        }
        if last.finished() || tokio::time::Instant::now() >= deadline {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
