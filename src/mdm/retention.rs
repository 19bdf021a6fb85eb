//! Command history retention (`--command-retention`, default 90 days).
//!
//! Every answered or cancelled command stays in its device's history (the admin's
//! `GET /devices/{id}/commands`) until it is older than the retention; then the background
//! sweep deletes it, so the store — and the page cache that follows it — stops growing with the
//! number of commands ever sent. The sweep never deletes:
//! - an unanswered command (`pending` or `sent`): the store re-checks the state inside the
//!   deleting transaction, so a command answered or re-sent meanwhile is safe;
//! - a command a profile deployment still reports on (its current commands);
//! - the Autopilot hardware-hash `Get` of a device not yet converted (conversion reads its
//!   result).
//!
//! After deletion a client-chosen command id can be used again for that device.
//!
//! A sweep reads the **finished-command index** ([`crate::store::finished`]: one entry per
//! answered or cancelled command, in the order they finished) from its start up to the first
//! entry not yet due, so it reads only the commands it deletes (and the few it keeps, whose
//! entries move one retention on), however long the history. The first sweep of a store whose
//! history predates the index walks every command once, in (device, command id) order, and
//! indexes what it keeps; so does the first sweep after each further retention period. Both are paged ([`PAGE`] entries at a time), so memory stays bounded;
//! each page is deleted in one transaction.
//!
//! Several nodes sharing one store each run the sweep; a **lease** record
//! ([`LEASES`]`["command-retention"]`, the pattern of [`crate::jobs`]) taken with a
//! compare-and-set makes one node at a time do it: a node that finds the lease held by another
//! node skips this round (its [`Sweep`] is all zeros), the holder renews the lease with every page
//! and releases it at the end, and a lease whose node died expires after [`LEASE_SECS`].

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::app::App;
use crate::autopilot::convert::HWDATA_COMMAND_ID;
use crate::jobs::Lease;
use crate::store::records::Kind;
use crate::store::records::RecordOp;
use crate::store::{finished, StoreError};

/// The sweeps' lease records (one per sweep, keyed by its name).
pub const LEASES: Kind<Lease> = Kind::new("sweep_lease");
/// The retention sweep's lease key.
pub const LEASE_KEY: &str = "command-retention";
/// How long a retention lease holds without renewal (seconds).
pub const LEASE_SECS: i64 = 120;

/// Records read per page of the sweep.
pub const PAGE: usize = 512;

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Commands looked at: with the index, only those due (finished before the cutoff).
    pub scanned: usize,
    /// Commands deleted.
    pub deleted: usize,
    /// Old enough but kept because a deployment or an Autopilot conversion still needs them.
    pub kept: usize,
    /// The sweep walked the whole history (the first sweep of a store whose history is not yet
    /// indexed) instead of reading the finished-command index.
    pub full_walk: bool,
}

/// The command ids of `device_id` that must outlive the retention.
fn protected(app: &App, device_id: &str) -> Result<HashSet<String>, StoreError> {
    let mut keep: HashSet<String> = crate::profiles::reconcile::deployments_of(app, device_id)?
        .into_values()
        .flat_map(|d| d.commands.into_iter().map(|q| q.command_id))
        .collect();
    if let Some(d) = app.store.get_device(device_id)? {
        if d.autopilot_serial.is_none() {
            keep.insert(format!("{HWDATA_COMMAND_ID}-{}", d.cert_serial));
        }
    }
    Ok(keep)
}

/// Takes (or renews) the lease `key` for this node at `now`; `false` if another node holds it.
fn take_lease(app: &App, key: &str, now: i64) -> Result<bool, StoreError> {
    let node = app.node_id.as_str();
    let mut mine = false;
    LEASES.update(app.store.records(), key, |cur| {
        mine = cur.as_ref().is_none_or(|l| l.node == node || l.until < now);
        Ok(if mine {
            Some(Lease {
                node: node.to_string(),
                until: now.saturating_add(LEASE_SECS),
            })
        } else {
            cur
        })
    })?;
    Ok(mine)
}

/// Releases the lease `key` if this node holds it.
fn release_lease(app: &App, key: &str) -> Result<(), StoreError> {
    let node = app.node_id.as_str();
    LEASES.update(app.store.records(), key, |cur| {
        Ok(cur.filter(|l| l.node != node))
    })?;
    Ok(())
}

/// Deletes every command that reached its final state more than `retention` before `now`
/// (Unix seconds), except the protected ones (see the module documentation). Returns all zeros
/// without looking at anything when another node holds the sweep's lease (it is sweeping).
pub fn sweep(app: &App, now: i64, retention: Duration) -> Result<Sweep, StoreError> {
    use crate::metrics::{Sweep as Which, SweepOutcome};
    let started = std::time::Instant::now();
    let r = sweep_once(app, now, retention);
    let outcome = match &r {
        Ok(None) => SweepOutcome::Skipped,
        Ok(Some(_)) => SweepOutcome::Ok,
        Err(_) => SweepOutcome::Error,
    };
    app.metrics
        .sweep(Which::CommandRetention, outcome, started.elapsed());
    r.map(Option::unwrap_or_default)
}

/// [`sweep`]; `None` when another node holds the lease.
fn sweep_once(app: &App, now: i64, retention: Duration) -> Result<Option<Sweep>, StoreError> {
    if !take_lease(app, LEASE_KEY, now)? {
        tracing::debug!("command history sweep: another node is sweeping");
        return Ok(None);
    }
    let r = sweep_leased(app, now, retention);
    let released = release_lease(app, LEASE_KEY);
    let out = r?;
    released?;
    Ok(Some(out))
}

/// The sweep proper, under the lease (renewed with every page; stops if it was lost): through
/// the finished-command index ([`crate::store::finished`]), or one walk of the whole history
/// that completes it when no walk completed within the last retention period. That walk, once
/// per retention, is also what catches a finished command without an entry (one a node of an
/// older version finished during a rolling upgrade): each command is read about twice in its
/// life instead of at every sweep.
fn sweep_leased(app: &App, now: i64, retention: Duration) -> Result<Sweep, StoreError> {
    let cutoff = now.saturating_sub(i64::try_from(retention.as_secs()).unwrap_or(i64::MAX));
    let (kind, key) = finished::BUILT;
    let walked = app
        .store
        .records()
        .get_record(kind, key)?
        .and_then(|v| String::from_utf8(v).ok()?.parse::<i64>().ok());
    if walked.is_some_and(|t| t > cutoff) {
        return sweep_index(app, now, cutoff);
    }
    let out = walk_history(app, now, cutoff)?;
    if out.complete {
        app.store.records().apply_records(&[RecordOp::Put {
            kind,
            key: key.to_string(),
            value: now.to_string().into_bytes(),
        }])?;
        tracing::info!(
            scanned = out.sweep.scanned,
            "command history sweep: walked the whole history and indexed every finished command; the sweeps of the next retention period read only what they delete"
        );
    }
    Ok(out.sweep)
}

/// Renews the lease before every page but the first; `false` if another node took it.
fn renew(app: &App, now: i64, first: &mut bool) -> Result<bool, StoreError> {
    if std::mem::take(first) || take_lease(app, LEASE_KEY, app.clock.now_unix().max(now))? {
        return Ok(true);
    }
    tracing::warn!("command history sweep: lease lost to another node; stopping here");
    Ok(false)
}

/// The protected command ids of the devices a sweep meets, read once per device and sweep (the
/// index interleaves devices; the walk meets them in order); at most [`Protected::DEVICES`]
/// devices are remembered at once.
#[derive(Default)]
struct Protected(HashMap<String, HashSet<String>>);

impl Protected {
    const DEVICES: usize = 10_000;

    fn contains(
        &mut self,
        app: &App,
        device_id: &str,
        command_id: &str,
    ) -> Result<bool, StoreError> {
        if !self.0.contains_key(device_id) {
            if self.0.len() >= Self::DEVICES {
                self.0.clear();
            }
            self.0
                .insert(device_id.to_string(), protected(app, device_id)?);
        }
        Ok(self
            .0
            .get(device_id)
            .is_some_and(|k| k.contains(command_id)))
    }
}

/// One page of the index at a time, in due order, up to the first entry not yet due: each entry
/// costs one command read; the command is deleted, kept (its entry moved to `now`, so it is
/// looked at again one retention later) or, if it is gone, unanswered or finished later than the
/// entry says, the entry is dropped or re-timed.
fn sweep_index(app: &App, now: i64, cutoff: i64) -> Result<Sweep, StoreError> {
    let mut out = Sweep::default();
    let mut cursor: Option<String> = None;
    let mut first = true;
    let mut keep = Protected::default();
    loop {
        if !renew(app, now, &mut first)? {
            break;
        }
        let page = app
            .store
            .records()
            .scan_records(finished::KIND, cursor.as_deref(), PAGE)?;
        let Some((last, _)) = page.last() else { break };
        cursor = Some(last.clone());
        let full = page.len() == PAGE;
        let mut reached_due = false;
        let mut doomed = Vec::new();
        let mut ops = Vec::new();
        for (entry, _) in &page {
            let Some((due, device_id, command_id)) = finished::parse(entry) else {
                tracing::warn!(
                    entry = entry.escape_debug().to_string(),
                    "command history index: malformed entry dropped"
                );
                ops.push(drop_entry(entry));
                continue;
            };
            if due >= cutoff {
                reached_due = true;
                break;
            }
            out.scanned += 1;
            let finished = app
                .store
                .get_command(device_id, command_id)?
                .and_then(|c| c.finished_at());
            match finished {
                // Gone (its device was deleted) or unanswered again: its next final state
                // indexes it anew.
                None => ops.push(drop_entry(entry)),
                Some(t) if t >= cutoff => {
                    ops.push(drop_entry(entry));
                    ops.push(put_entry(&finished::key(t, device_id, command_id)));
                }
                Some(t) => {
                    if keep.contains(app, device_id, command_id)? {
                        out.kept += 1;
                        ops.push(drop_entry(entry));
                        ops.push(put_entry(&finished::key(now, device_id, command_id)));
                    } else {
                        // `delete_finished` removes the entry at the finish time; an entry
                        // moved since is removed here.
                        if t != due {
                            ops.push(drop_entry(entry));
                        }
                        doomed.push((device_id.to_string(), command_id.to_string()));
                    }
                }
            }
        }
        out.deleted += apply_page(app, &doomed, &ops)?;
        if reached_due || !full {
            break;
        }
    }
    Ok(out)
}

/// Deletes a page's doomed commands (with their own index entries), then applies its other
/// index changes; returns how many commands were deleted.
fn apply_page(
    app: &App,
    doomed: &[(String, String)],
    ops: &[RecordOp],
) -> Result<usize, StoreError> {
    let deleted = if doomed.is_empty() {
        0
    } else {
        app.store.delete_finished(doomed)?
    };
    if !ops.is_empty() {
        app.store.records().apply_records(ops)?;
    }
    Ok(deleted)
}

fn drop_entry(entry: &str) -> RecordOp {
    RecordOp::Delete {
        kind: finished::KIND,
        key: entry.to_string(),
    }
}

fn put_entry(entry: &str) -> RecordOp {
    RecordOp::Put {
        kind: finished::KIND,
        key: entry.to_string(),
        value: Vec::new(),
    }
}

/// What [`walk_history`] did, and whether it saw the whole history (not stopped by a lost
/// lease).
struct Walk {
    sweep: Sweep,
    complete: bool,
}

/// Every command, page by page in (device, command id) order: deletes the old finished ones as
/// [`sweep_index`] would, and gives every finished command not yet due its index entry (a
/// history recorded before the index existed has none).
fn walk_history(app: &App, now: i64, cutoff: i64) -> Result<Walk, StoreError> {
    let mut out = Sweep {
        full_walk: true,
        ..Sweep::default()
    };
    let mut cursor: Option<(String, String)> = None;
    let mut keep = Protected::default();
    let mut first = true;
    loop {
        if !renew(app, now, &mut first)? {
            return Ok(Walk {
                sweep: out,
                complete: false,
            });
        }
        let page = app
            .store
            .scan_commands(cursor.as_ref().map(|(d, c)| (d.as_str(), c.as_str())), PAGE)?;
        let Some(last) = page.last() else { break };
        cursor = Some((last.device_id.clone(), last.command_id.clone()));
        out.scanned += page.len();
        let mut doomed = Vec::new();
        let mut ops = Vec::new();
        for c in &page {
            let Some(t) = c.finished_at() else { continue };
            let entry = finished::key(t, &c.device_id, &c.command_id);
            if t >= cutoff {
                ops.push(put_entry(&entry));
                continue;
            }
            if keep.contains(app, &c.device_id, &c.command_id)? {
                // Its entry, if it has one, is the index sweeps' to move; one without an entry
                // is looked at again by the next walk. Adding one here could leave two.
                out.kept += 1;
            } else {
                doomed.push((c.device_id.clone(), c.command_id.clone()));
            }
        }
        out.deleted += apply_page(app, &doomed, &ops)?;
        if page.len() < PAGE {
            break;
        }
    }
    Ok(Walk {
        sweep: out,
        complete: true,
    })
}

/// How often the background task sweeps: a tenth of the retention, between 5 seconds and 1 hour.
pub fn interval(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(5), Duration::from_secs(3_600))
}

/// Sweeps every [`interval`] until `stop` turns true; logs what each sweep deleted.
pub async fn run(
    app: std::sync::Arc<App>,
    retention: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let every = interval(retention);
    tracing::info!(
        retention_s = retention.as_secs(),
        every_s = every.as_secs(),
        "command history retention"
    );
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let a = app.clone();
        let started = std::time::Instant::now();
        let r = tokio::task::spawn_blocking(move || sweep(&a, a.clock.now_unix(), retention)).await;
        match r {
            Ok(Ok(s)) if s.deleted > 0 || s.kept > 0 => tracing::info!(
                scanned = s.scanned,
                deleted = s.deleted,
                kept = s.kept,
                full_walk = s.full_walk,
                ms = started.elapsed().as_millis() as u64,
                "command history sweep"
            ),
            Ok(Ok(s)) => tracing::debug!(scanned = s.scanned, "command history sweep: nothing old"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "command history sweep failed; retrying at the next interval")
            }
            Err(e) => tracing::warn!(error = %e, "command history sweep task failed"),
        }
    }
}
