//! The deliverer: one background task per node that sends the outbox to the receiver.
//!
//! * **One node at a time** holds the lease record `sweep_lease/webhook-delivery` (taken with a
//!   compare-and-set, renewed every few seconds while it delivers, expiring [`LEASE_SECS`] after
//!   its node stops renewing; on the embedded store, which one process opens, a restarted node
//!   takes its predecessor's lease at once). A node sends only while its lease has more than
//!   [`LEASE_MARGIN_SECS`] left, longer than one attempt can take, so two nodes never deliver
//!   the same device's events at once.
//! * **Per device in order**: a pass walks the devices with pending events and gives each due
//!   device one task (at most [`CONCURRENCY`] at once); the task sends the device's head, removes
//!   it on a 2xx and goes on with the next, and stops at the first failure (the head waits for its
//!   backoff; nothing behind it is sent).
//! * **Backoff**: after the n-th failed attempt the event waits `min(cap, 2^(n-1) s)`, times a
//!   random factor in [0.5, 1] (so receivers coming back are not hit by every node at once).
//! * **Dead letters**: an event that failed `max_attempts` times, or is older than `max_age`, is
//!   moved to the dead letters (visible and redeliverable through the API), which unblocks the
//!   device's next event.

use crate::metrics::WebhookOutcome;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::client::{Post, REQUEST_TIMEOUT};
use super::{Webhook, EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER};
use crate::app::App;
use crate::jobs::Lease;
use crate::mdm::retention::LEASES;
use crate::store::outbox::{self, OutboxEvent};
use crate::store::StoreError;

/// The lease key.
pub const LEASE_KEY: &str = "webhook-delivery";
/// How long a lease holds without renewal (seconds).
pub const LEASE_SECS: i64 = 30;
/// A node sends only while its lease has at least this much left (seconds).
pub const LEASE_MARGIN_SECS: i64 = REQUEST_TIMEOUT.as_secs() as i64 + 5;
/// Devices delivered to at once.
pub const CONCURRENCY: usize = 8;
/// Longest wait between two attempts of one event (seconds).
pub const BACKOFF_CAP_SECS: u64 = 900;
/// Events sent to one device in one pass before others get their turn.
pub const PER_DEVICE_PER_PASS: usize = 100;
/// Idle pause between passes.
const TICK: Duration = Duration::from_millis(500);

/// The pause after the `attempts`-th failed attempt, before jitter.
pub fn backoff_secs(attempts: u32) -> u64 {
    let exp = attempts.saturating_sub(1).min(20);
    (1u64 << exp).min(BACKOFF_CAP_SECS)
}

/// [`backoff_secs`] times a random factor in [0.5, 1], at least one second.
fn jittered(attempts: u32) -> i64 {
    let base = backoff_secs(attempts) * 1000;
    let ms = base / 2 + crate::clock::jitter(base / 2 + 1);
    i64::try_from(ms.div_ceil(1000).max(1)).unwrap_or(1)
}

/// Takes or renews the lease for this node; the time it holds until, or `None` when another
/// node holds it.
fn take_lease(app: &App, now: i64) -> Result<Option<i64>, StoreError> {
    let node = app.node_id.as_str();
    let mut mine = false;
    let until = now.saturating_add(LEASE_SECS);
    // The embedded store is opened by one process only: a lease left by a process that was
    // killed is this node's own, and is taken over at once instead of after its expiry.
    let sole = app.cfg.database_url.is_none();
    LEASES.update(app.store.records(), LEASE_KEY, |cur| {
        mine = sole || cur.as_ref().is_none_or(|l| l.node == node || l.until < now);
        Ok(if mine {
            Some(Lease {
                node: node.to_string(),
                until,
            })
        } else {
            cur
        })
    })?;
    Ok(mine.then_some(until))
}

fn release_lease(app: &App) -> Result<(), StoreError> {
    let node = app.node_id.as_str();
    LEASES.update(app.store.records(), LEASE_KEY, |cur| {
        Ok(cur.filter(|l| l.node != node))
    })?;
    Ok(())
}

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, StoreError> + Send + 'static,
) -> Result<R, StoreError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StoreError::Backend {
            reason: format!("webhook store task: {e}"),
        })
    })
}

/// Runs until `stop` turns true.
pub async fn run(app: Arc<App>, wh: Arc<Webhook>, mut stop: tokio::sync::watch::Receiver<bool>) {
    tracing::info!(url = %wh.cfg.target, max_attempts = wh.cfg.max_attempts, max_age_secs = wh.cfg.max_age.as_secs(), "webhook deliverer started");
    let lease_until = Arc::new(AtomicI64::new(0));
    let mut last_housekeeping = 0i64;
    loop {
        if *stop.borrow() {
            break;
        }
        let now = app.clock.now_unix();
        // Renew when half the lease is gone.
        if lease_until.load(Ordering::Relaxed) - now < LEASE_SECS / 2 {
            let a = app.clone();
            match blocking(move || take_lease(&a, now)).await {
                Ok(Some(until)) => lease_until.store(until, Ordering::Relaxed),
                Ok(None) => lease_until.store(0, Ordering::Relaxed),
                Err(e) => {
                    tracing::warn!(error = %e, "webhook: cannot take the delivery lease");
                    lease_until.store(0, Ordering::Relaxed);
                }
            }
        }
        if lease_until.load(Ordering::Relaxed) - now > LEASE_MARGIN_SECS {
            if now - last_housekeeping >= 60 {
                last_housekeeping = now;
                housekeeping(&app, &wh).await;
            }
            if let Err(e) = pass(&app, &wh, &lease_until, &stop).await {
                tracing::warn!(error = %e, "webhook delivery pass failed; trying again");
            }
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
    if lease_until.load(Ordering::Relaxed) > 0 {
        let a = app.clone();
        if let Err(e) = blocking(move || release_lease(&a)).await {
            tracing::warn!(error = %e, "webhook: delivery lease not released (it expires by itself)");
        }
    }
}

async fn housekeeping(app: &Arc<App>, wh: &Arc<Webhook>) {
    let a = app.clone();
    match blocking(move || {
        outbox::prune_dead(a.store.records(), outbox::MAX_DEAD)?;
        outbox::depth(a.store.records())
    })
    .await
    {
        Ok(depth) => {
            wh.stats.outbox_depth.store(depth, Ordering::Relaxed);
            app.metrics.set_webhook_outbox_depth(depth);
        }
        Err(e) => tracing::warn!(error = %e, "webhook: outbox housekeeping failed"),
    }
}

/// One walk over the devices with pending events.
async fn pass(
    app: &Arc<App>,
    wh: &Arc<Webhook>,
    lease_until: &Arc<AtomicI64>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let sem = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = JoinSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let a = app.clone();
        let after = cursor.clone();
        let (heads, next) =
            blocking(move || outbox::heads(a.store.records(), after.as_deref(), 256)).await?;
        let now = app.clock.now_unix();
        for ev in heads {
            if ev.next_attempt_at > now {
                continue;
            }
            let Ok(permit) = sem.clone().acquire_owned().await else {
                break;
            };
            if *stop.borrow() {
                break;
            }
            let (a, w, l) = (app.clone(), wh.clone(), lease_until.clone());
            tasks.spawn(async move {
                device_task(&a, &w, &l, ev).await;
                drop(permit);
            });
        }
        match next {
            Some(c) if !*stop.borrow() => cursor = Some(c),
            _ => break,
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Sends one device's events in order, starting with `ev` (its head), until one fails, none is
/// left, or the device had its share of this pass.
async fn device_task(app: &Arc<App>, wh: &Arc<Webhook>, lease_until: &AtomicI64, ev: OutboxEvent) {
    let device_id = ev.device_id.clone();
    let mut next = Some(ev);
    for _ in 0..PER_DEVICE_PER_PASS {
        let Some(ev) = next.take() else {
            return;
        };
        let now = app.clock.now_unix();
        if ev.next_attempt_at > now
            || lease_until.load(Ordering::Relaxed) - now <= LEASE_MARGIN_SECS
        {
            return;
        }
        if let Err(e) = attempt(app, wh, ev, now).await {
            tracing::warn!(device_id = %device_id, error = %e, "webhook: outbox not updated after an attempt; the event will be sent again");
            return;
        }
        let (a, d) = (app.clone(), device_id.clone());
        next = match blocking(move || outbox::head(a.store.records(), &d)).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(device_id = %device_id, error = %e, "webhook: cannot read the outbox");
                return;
            }
        };
        // Stop after a failure: the head now waits for its backoff.
        if next
            .as_ref()
            .is_some_and(|n| n.attempts > 0 && n.next_attempt_at > app.clock.now_unix())
        {
            return;
        }
    }
}

/// One attempt of `ev`: sends it (or dead-letters it when it is too old or has failed too
/// often) and records the outcome.
async fn attempt(
    app: &Arc<App>,
    wh: &Arc<Webhook>,
    ev: OutboxEvent,
    now: i64,
) -> Result<(), StoreError> {
    let age = now.saturating_sub(ev.created_at);
    let too_old = u64::try_from(age).unwrap_or(0) > wh.cfg.max_age.as_secs();
    if too_old || ev.attempts >= wh.cfg.max_attempts {
        let reason = if too_old {
            format!(
                "not delivered within {}s (--webhook-max-age); last error: {}",
                wh.cfg.max_age.as_secs(),
                ev.last_error.as_deref().unwrap_or("none")
            )
        } else {
            format!(
                "{} attempts failed (--webhook-max-attempts); last error: {}",
                ev.attempts,
                ev.last_error.as_deref().unwrap_or("none")
            )
        };
        tracing::warn!(device_id = %ev.device_id, event_id = %ev.event_id, event_type = %ev.ty, attempts = ev.attempts, %reason, "webhook event dead-lettered");
        let a = app.clone();
        let moved =
            blocking(move || outbox::finish(a.store.records(), &ev, Some(&reason), now)).await?;
        if moved {
            wh.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            app.metrics.webhook_delivery(WebhookOutcome::DeadLetter);
        }
        return Ok(());
    }
    let body = ev.body();
    let t = app.clock.now_unix();
    let post = Post {
        headers: vec![
            (SIGNATURE_HEADER, wh.signature(t, &body)),
            (EVENT_ID_HEADER, ev.event_id.clone()),
            (EVENT_TYPE_HEADER, ev.ty.clone()),
        ],
        body,
    };
    let outcome = wh.client.post(&post).await;
    match outcome {
        Ok(code) if (200..300).contains(&code) => {
            tracing::debug!(device_id = %ev.device_id, event_id = %ev.event_id, event_type = %ev.ty, code, "webhook event delivered");
            wh.stats.delivered.fetch_add(1, Ordering::Relaxed);
            app.metrics.webhook_delivery(WebhookOutcome::Delivered);
            let a = app.clone();
            blocking(move || outbox::finish(a.store.records(), &ev, None, now)).await?;
            Ok(())
        }
        other => {
            let error = match other {
                Ok(code) => format!("HTTP {code}"),
                Err(e) => e,
            };
            wh.stats.failed.fetch_add(1, Ordering::Relaxed);
            if ev.attempts + 1 >= wh.cfg.max_attempts {
                let reason = format!(
                    "{} attempts failed (--webhook-max-attempts); last error: {error}",
                    ev.attempts + 1
                );
                tracing::warn!(device_id = %ev.device_id, event_id = %ev.event_id, event_type = %ev.ty, url = %wh.cfg.target, %reason, "webhook event dead-lettered");
                let a = app.clone();
                let moved = blocking(move || {
                    let mut ev = ev;
                    ev.attempts += 1;
                    ev.last_error = Some(error);
                    outbox::finish(a.store.records(), &ev, Some(&reason), now)
                })
                .await?;
                if moved {
                    wh.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    app.metrics.webhook_delivery(WebhookOutcome::DeadLetter);
                }
                return Ok(());
            }
            // The last failed attempt counts as `dead_letter` above, the others as `retry`.
            app.metrics.webhook_delivery(WebhookOutcome::Retry);
            let wait = jittered(ev.attempts + 1);
            tracing::info!(device_id = %ev.device_id, event_id = %ev.event_id, event_type = %ev.ty, attempt = ev.attempts + 1, %error, retry_in_secs = wait, url = %wh.cfg.target, "webhook delivery failed");
            let a = app.clone();
            blocking(move || {
                outbox::record_failure(a.store.records(), &ev, &error, now + wait).map(|_| ())
            })
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_secs(1), 1);
        assert_eq!(backoff_secs(2), 2);
        assert_eq!(backoff_secs(5), 16);
        assert_eq!(backoff_secs(30), BACKOFF_CAP_SECS);
        for n in 1..40 {
            let j = jittered(n);
            let b = i64::try_from(backoff_secs(n)).unwrap();
            assert!(j >= 1 && j <= b && j * 2 >= b, "{n}: {j} vs {b}");
        }
    }
}
