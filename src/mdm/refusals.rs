//! Refused enrollment requests of the last day, for the dashboard and
//! `GET /api/v1/enrollments/refused`.
//!
//! The refusal paths are reachable without authentication, so what is kept is bounded and costs
//! the request path nothing but a short in-memory push:
//! - each refusal is its endpoint and fault kind (fixed label sets:
//!   [`crate::metrics::labels::EnrollEndpoint`], [`crate::metrics::labels::Fault`]) and the
//!   fault's reason clipped to [`MAX_DETAIL`] bytes: the text the server log already carries,
//!   which never holds a password;
//! - the request path only appends to an in-memory queue of at most [`MAX_KEPT`] entries (the
//!   oldest are dropped first);
//! - a background task ([`run`]) writes the queue every [`FLUSH_EVERY`] through the records
//!   API, in one `apply_records` batch, whatever the number of refusals meanwhile: an attacker
//!   cannot force one store write (or fsync) per attempt. The dashboard and the API flush first,
//!   so what they show is current;
//! - records are a ring of [`MAX_KEPT`] slots (`REFUSALS[seq % MAX_KEPT]`): the store never
//!   holds more than [`MAX_KEPT`] of them, each under ~0.5 KiB; [`prune`] deletes those older
//!   than [`WINDOW_SECS`] and readers ignore them anyway.
//!
//! Several nodes sharing one store each number their own refusals from the highest sequence
//! they found; they may overwrite each other's slots, which loses entries but never the bound.
//! Refusals still queued when the process is killed (not stopped) are lost: at most
//! [`FLUSH_EVERY`] of them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::store::records::Kind;
use crate::store::{clip_bytes, StoreError};

/// Refusal records, by ring slot.
pub const REFUSALS: Kind<Refusal> = Kind::new("enroll_refusal");
/// Most refusals kept (queued or stored).
pub const MAX_KEPT: u64 = 1000;
/// How far back refusals are shown and kept (seconds).
pub const WINDOW_SECS: i64 = 86_400;
/// Longest reason kept, in bytes.
pub const MAX_DETAIL: usize = 240;
/// How often the queue is written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// How often old records are deleted.
const PRUNE_EVERY: u32 = 120;

/// One refused enrollment request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Sequence number (ring slot = `seq % MAX_KEPT`).
    pub seq: u64,
    /// When (Unix seconds).
    pub at: i64,
    /// `discovery`, `policy`, `enrollment` or `renewal`.
    pub endpoint: String,
    /// The fault: `Authentication`, `Authorization`, `MessageFormat`, ... (the metrics' label).
    pub kind: String,
    /// The fault's reason, clipped.
    pub detail: String,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Refusal>,
    /// Next sequence number; `None` until read from the store.
    next: Option<u64>,
    /// Dropped from a full queue since the last flush.
    dropped: u64,
}

/// The in-memory queue of refusals not yet written (one per process).
#[derive(Debug, Default)]
pub struct Recorder {
    state: Mutex<State>,
}

impl Recorder {
    /// Queues one refusal (no store access; the oldest queued one goes when the queue is full).
    pub fn record(&self, at: i64, endpoint: &'static str, kind: &'static str, reason: &str) {
        let Ok(mut s) = self.state.lock() else { return };
        if s.queue.len() as u64 >= MAX_KEPT {
            s.queue.pop_front();
            s.dropped += 1;
        }
        s.queue.push_back(Refusal {
            seq: 0,
            at,
            endpoint: endpoint.to_string(),
            kind: kind.to_string(),
            detail: clip_bytes(reason, MAX_DETAIL),
        });
    }

    /// Refusals queued now.
    pub fn queued(&self) -> usize {
        self.state.lock().map(|s| s.queue.len()).unwrap_or(0)
    }
}

/// Writes the queued refusals in one batch (none queued: no store access). Returns how many.
pub fn flush(app: &App) -> Result<usize, StoreError> {
    let (batch, start, dropped) = {
        let Ok(mut s) = app.refusals.state.lock() else {
            return Ok(0);
        };
        if s.queue.is_empty() {
            return Ok(0);
        }
        let batch: Vec<Refusal> = s.queue.drain(..).collect();
        (batch, s.next, std::mem::take(&mut s.dropped))
    };
    let start = match start {
        Some(n) => n,
        None => match REFUSALS.all(app.store.records()) {
            Ok(all) => all.iter().map(|(_, r)| r.seq + 1).max().unwrap_or(0),
            Err(e) => {
                requeue(app, batch);
                return Err(e);
            }
        },
    };
    let ops: Vec<_> = batch
        .iter()
        .zip(start..)
        .map(|(r, seq)| {
            let r = Refusal { seq, ..r.clone() };
            REFUSALS.put_op(&slot(seq), &r)
        })
        .collect();
    if let Err(e) = app.store.records().apply_records(&ops) {
        requeue(app, batch);
        return Err(e);
    }
    let n = batch.len();
    if let Ok(mut s) = app.refusals.state.lock() {
        s.next = Some(start + n as u64);
    }
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "refused enrollments arrived faster than {MAX_KEPT} per {FLUSH_EVERY:?}; the oldest were not recorded"
        );
    }
    Ok(n)
}

/// Puts a batch that could not be written back in front of the queue (within the bound).
fn requeue(app: &App, batch: Vec<Refusal>) {
    if let Ok(mut s) = app.refusals.state.lock() {
        for r in batch.into_iter().rev() {
            if s.queue.len() as u64 >= MAX_KEPT {
                break;
            }
            s.queue.push_front(r);
        }
    }
}

fn slot(seq: u64) -> String {
    format!("{:04}", seq % MAX_KEPT)
}

/// Deletes the records older than [`WINDOW_SECS`]; how many.
pub fn prune(app: &App) -> Result<usize, StoreError> {
    let cutoff = app.clock.now_unix() - WINDOW_SECS;
    let old: Vec<_> = REFUSALS
        .all(app.store.records())?
        .into_iter()
        .filter(|(_, r)| r.at < cutoff)
        .map(|(k, _)| REFUSALS.delete_op(&k))
        .collect();
    if !old.is_empty() {
        app.store.records().apply_records(&old)?;
    }
    Ok(old.len())
}

/// The refusals of the last day: how many, per kind, and the newest first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recent {
    /// Refusals in the window.
    pub count: usize,
    /// Per fault kind.
    pub by_kind: BTreeMap<String, usize>,
    /// Newest first.
    pub refusals: Vec<Refusal>,
    /// The window (seconds).
    pub window_secs: i64,
}

/// Flushes the queue, then reads the refusals of the last [`WINDOW_SECS`].
pub fn recent(app: &App) -> Result<Recent, StoreError> {
    flush(app)?;
    let cutoff = app.clock.now_unix() - WINDOW_SECS;
    let mut refusals: Vec<Refusal> = REFUSALS
        .all(app.store.records())?
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| r.at >= cutoff)
        .collect();
    refusals.sort_by_key(|r| std::cmp::Reverse(r.seq));
    let mut by_kind = BTreeMap::new();
    for r in &refusals {
        *by_kind.entry(r.kind.clone()).or_insert(0) += 1;
    }
    Ok(Recent {
        count: refusals.len(),
        by_kind,
        refusals,
        window_secs: WINDOW_SECS,
    })
}

/// Writes the queue every [`FLUSH_EVERY`] and prunes now and then, until `stop`; a last flush
/// on the way out.
pub async fn run(app: std::sync::Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut ticks: u32 = 0;
    loop {
        let stopping = tokio::select! {
            _ = stop.changed() => true,
            _ = tokio::time::sleep(FLUSH_EVERY) => false,
        };
        ticks = ticks.wrapping_add(1);
        let prune_now = ticks % PRUNE_EVERY == 1;
        let a = app.clone();
        let r = tokio::task::spawn_blocking(move || {
            let n = flush(&a)?;
            let p = if prune_now { prune(&a)? } else { 0 };
            Ok::<_, StoreError>((n, p))
        })
        .await;
        match r {
            Ok(Ok((n, p))) if n > 0 || p > 0 => {
                tracing::debug!(written = n, pruned = p, "refused enrollments recorded")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "refused enrollments not recorded yet; retrying")
            }
            Err(e) => tracing::warn!(error = %e, "refused-enrollment recorder failed"),
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bounded_and_clips() {
        let r = Recorder::default();
        for i in 0..(MAX_KEPT + 5) {
            r.record(i as i64, "enrollment", "Authentication", &"x".repeat(1000));
        }
        assert_eq!(r.queued() as u64, MAX_KEPT);
        let s = r.state.lock().unwrap();
        assert_eq!(s.dropped, 5);
        assert_eq!(s.queue.front().map(|r| r.at), Some(5));
        assert!(s.queue.iter().all(|r| r.detail.len() == MAX_DETAIL));
    }

    #[test]
    fn slots_wrap() {
        assert_eq!(slot(0), "0000");
        assert_eq!(slot(MAX_KEPT + 7), "0007");
    }
}
