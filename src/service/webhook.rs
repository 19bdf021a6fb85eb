//! The results webhook's state and dead letters (the rules behind `/api/v1/webhook`): reads for
//! every token, redelivery and deletion for admin tokens, both audited.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{audit, blocking, Actor, ServiceError};
use crate::app::App;
use crate::store::outbox::{self, OutboxEvent, Redeliver};

/// Event ids are 32 lower-case hex digits; anything else names no dead letter.
fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::not_found(format!("dead letter {id}"))
}

/// The receiver, pending events, dead letters and this node's delivery counts.
pub async fn status(app: &Arc<App>) -> Result<Value, ServiceError> {
    let a = app.clone();
    let (pending, dead) = blocking(move || {
        Ok((
            outbox::depth(a.store.records())?,
            outbox::dead_count(a.store.records())?,
        ))
    })
    .await?;
    let stats = app
        .webhook
        .as_ref()
        .map(|w| w.stats.snapshot())
        .unwrap_or_default();
    Ok(json!({
        "configured": app.webhook.is_some(),
        "url": app.webhook.as_ref().map(|w| w.cfg.target.to_string()),
        "pending": pending,
        "dead_letters": dead,
        "delivered": stats.delivered,
        "failed": stats.failed,
        "dead_lettered": stats.dead_lettered,
    }))
}

/// A page of dead letters, oldest first, and the cursor of the next.
pub async fn dead_letters(
    app: &Arc<App>,
    cursor: Option<String>,
    limit: usize,
) -> Result<(Vec<OutboxEvent>, Option<String>), ServiceError> {
    let a = app.clone();
    blocking(move || {
        Ok(outbox::dead_letters(
            a.store.records(),
            cursor.as_deref(),
            limit,
        )?)
    })
    .await
}

/// One dead letter.
pub async fn dead_letter(app: &Arc<App>, id: &str) -> Result<OutboxEvent, ServiceError> {
    if !valid_id(id) {
        return Err(not_found(id));
    }
    let (a, i) = (app.clone(), id.to_string());
    blocking(move || Ok(outbox::dead_letter(a.store.records(), &i)?))
        .await?
        .ok_or_else(|| not_found(id))
}

/// Queues a dead letter again at the end of its device's outbox (same id and body).
pub async fn redeliver(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
) -> Result<OutboxEvent, ServiceError> {
    actor.require_admin("redeliver a webhook event")?;
    if !valid_id(id) {
        return Err(not_found(id));
    }
    let (a, i) = (app.clone(), id.to_string());
    match blocking(move || Ok(outbox::redeliver(a.store.records(), &i)?)).await? {
        Redeliver::NotFound => Err(not_found(id)),
        Redeliver::Full => Err(ServiceError::ConflictState {
            reason: format!(
                "the device's webhook outbox already holds {} events",
                outbox::MAX_PENDING_PER_DEVICE
            ),
        }),
        Redeliver::Queued(e) => {
            tracing::info!(event_id = %e.event_id, device_id = %e.device_id, event_type = %e.ty, "webhook dead letter queued again");
            audit(
                app,
                actor,
                "webhook.redeliver",
                &e.event_id,
                json!({ "device_id": e.device_id, "type": e.ty }),
            )
            .await;
            Ok(e)
        }
    }
}

/// Deletes a dead letter.
pub async fn delete_dead(app: &Arc<App>, actor: &Actor, id: &str) -> Result<(), ServiceError> {
    actor.require_admin("delete a webhook dead letter")?;
    if !valid_id(id) {
        return Err(not_found(id));
    }
    let (a, i) = (app.clone(), id.to_string());
    let gone = blocking(move || {
        let e = outbox::dead_letter(a.store.records(), &i)?;
        let deleted = outbox::delete_dead(a.store.records(), &i)?;
        Ok(e.filter(|_| deleted))
    })
    .await?;
    let e = gone.ok_or_else(|| not_found(id))?;
    tracing::info!(event_id = %e.event_id, device_id = %e.device_id, "webhook dead letter deleted");
    audit(
        app,
        actor,
        "webhook.dead_letter.delete",
        &e.event_id,
        json!({ "device_id": e.device_id, "type": e.ty }),
    )
    .await;
    Ok(())
}
