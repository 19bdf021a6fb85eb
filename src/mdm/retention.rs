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
//! The walk is paged ([`PAGE`] records at a time) in (device, command id) order and resumable, so
//! memory stays bounded whatever the history size; each page is deleted in one transaction.
//!
//! Several nodes sharing one store each run the sweep; a **lease** record
//! ([`LEASES`]`["command-retention"]`, the pattern of [`crate::jobs`]) taken with a
//! compare-and-set makes one node at a time do it: a node that finds the lease held by another
//! node skips this round (its [`Sweep`] is all zeros), the holder renews the lease with every page
//! and releases it at the end, and a lease whose node died expires after [`LEASE_SECS`].

use std::collections::HashSet;
use std::time::Duration;

use crate::app::App;
use crate::autopilot::convert::HWDATA_COMMAND_ID;
use crate::jobs::Lease;
use crate::store::records::Kind;
use crate::store::{CommandRecord, StoreError};

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
    /// Commands looked at.
    pub scanned: usize,
    /// Commands deleted.
    pub deleted: usize,
    /// Old enough but kept because a deployment or an Autopilot conversion still needs them.
    pub kept: usize,
}

/// When a command reached its final state (its enqueue time if it never recorded one).
fn finished_at(c: &CommandRecord) -> Option<i64> {
    c.state
        .is_terminal()
        .then(|| c.completed_at.unwrap_or(c.created_at))
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

/// The sweep proper, under the lease (renewed with every page; stops if it was lost).
fn sweep_leased(app: &App, now: i64, retention: Duration) -> Result<Sweep, StoreError> {
    let cutoff = now.saturating_sub(i64::try_from(retention.as_secs()).unwrap_or(i64::MAX));
    let mut out = Sweep::default();
    let mut cursor: Option<(String, String)> = None;
    // Protected ids of the device the walk is in (pages are in device order).
    let mut current: Option<(String, HashSet<String>)> = None;
    let mut first = true;
    loop {
        if !std::mem::take(&mut first)
            && !take_lease(app, LEASE_KEY, app.clock.now_unix().max(now))?
        {
            tracing::warn!("command history sweep: lease lost to another node; stopping here");
            break;
        }
        let page = app
            .store
            .scan_commands(cursor.as_ref().map(|(d, c)| (d.as_str(), c.as_str())), PAGE)?;
        let Some(last) = page.last() else { break };
        cursor = Some((last.device_id.clone(), last.command_id.clone()));
        out.scanned += page.len();
        let mut doomed = Vec::new();
        for c in &page {
            if finished_at(c).is_none_or(|t| t >= cutoff) {
                continue;
            }
            if current.as_ref().map(|(d, _)| d.as_str()) != Some(c.device_id.as_str()) {
                current = Some((c.device_id.clone(), protected(app, &c.device_id)?));
            }
            if current
                .as_ref()
                .is_some_and(|(_, keep)| keep.contains(&c.command_id))
            {
                out.kept += 1;
            } else {
                doomed.push((c.device_id.clone(), c.command_id.clone()));
            }
        }
        if !doomed.is_empty() {
            out.deleted += app.store.delete_finished(&doomed)?;
        }
        if page.len() < PAGE {
            break;
        }
    }
    Ok(out)
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
