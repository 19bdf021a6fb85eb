//! Admin API of the results webhook (`/api/v1/webhook/...`): its state and the dead letters
//! (rules in [`crate::service::webhook`]).
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/api/v1/webhook` | 200 `{"configured","url","pending","dead_letters","delivered","failed","dead_lettered"}` |
//! | GET | `/api/v1/webhook/dead-letters?limit=&cursor=` | 200 `{"dead_letters": [...], "next"}` (oldest first) |
//! | GET | `/api/v1/webhook/dead-letters/{event_id}` | 200 dead letter (with the body that was sent); 404 |
//! | POST | `/api/v1/webhook/dead-letters/{event_id}/redeliver` | 202 the event, back in its device's outbox (same `event_id`); 404; 409 outbox full |
//! | DELETE | `/api/v1/webhook/dead-letters/{event_id}` | 204; 404 |

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::{json, no_content, not_found, page_query, ApiError};
use crate::app::App;
use crate::http::routes::Resp;
use crate::service::webhook as svc;
use crate::service::Actor;
use crate::store::outbox::OutboxEvent;

/// A matched `/api/v1/webhook/...` route.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// GET the webhook's state.
    Status,
    /// GET dead letters.
    ListDead,
    /// GET one dead letter.
    GetDead(&'a str),
    /// POST redeliver.
    Redeliver(&'a str),
    /// DELETE one dead letter.
    DeleteDead(&'a str),
}

/// Matches the segments after `webhook`.
pub fn endpoint<'a>(segs: &[&'a str], method: &Method) -> Result<Route<'a>, ApiError> {
    use Route as R;
    Ok(match (segs, method.clone()) {
        ([], Method::GET) => R::Status,
        (["dead-letters"], Method::GET) => R::ListDead,
        (["dead-letters", id], Method::GET) => R::GetDead(id),
        (["dead-letters", id], Method::DELETE) => R::DeleteDead(id),
        (["dead-letters", id, "redeliver"], Method::POST) => R::Redeliver(id),
        ([] | ["dead-letters"] | ["dead-letters", _] | ["dead-letters", _, "redeliver"], _) => {
            return Err(ApiError::MethodNotAllowed)
        }
        _ => return Err(not_found("route")),
    })
}

/// Runs one webhook route.
pub async fn handle(
    app: &Arc<App>,
    actor: &Actor,
    r: Route<'_>,
    query: &str,
) -> Result<Resp, ApiError> {
    match r {
        Route::Status => Ok(json(StatusCode::OK, &svc::status(app).await?)),
        Route::ListDead => {
            let (limit, cursor) = page_query(query)?;
            let (page, next) = svc::dead_letters(app, cursor, limit).await?;
            let items: Vec<Value> = page.iter().map(view).collect();
            Ok(json(
                StatusCode::OK,
                &json!({ "dead_letters": items, "next": next }),
            ))
        }
        Route::GetDead(id) => Ok(json(
            StatusCode::OK,
            &view(&svc::dead_letter(app, id).await?),
        )),
        Route::Redeliver(id) => Ok(json(
            StatusCode::ACCEPTED,
            &view(&svc::redeliver(app, actor, id).await?),
        )),
        Route::DeleteDead(id) => {
            svc::delete_dead(app, actor, id).await?;
            Ok(no_content())
        }
    }
}

/// A dead letter as the API shows it: the stored event and the exact body it was sent with.
fn view(e: &OutboxEvent) -> Value {
    let body: Value = serde_json::from_slice(&e.body()).unwrap_or(Value::Null);
    json!({
        "event_id": e.event_id,
        "type": e.ty,
        "device_id": e.device_id,
        "created_at": e.created_at,
        "attempts": e.attempts,
        "last_error": e.last_error,
        "dead_at": e.dead_at,
        "dead_reason": e.dead_reason,
        "body": body,
    })
}

/// The OpenAPI paths and schemas of these routes (merged into [`super::openapi::document`]).
pub mod openapi {
    use serde_json::{json, Value};

    use crate::admin::openapi::{common, err, ok};

    fn id_param() -> Value {
        json!({"name": "event_id", "in": "path", "required": true, "description": "The event's id (32 hex digits).", "schema": {"type": "string"}})
    }

    /// Paths of the webhook routes.
    pub fn paths() -> Value {
        json!({
            "/api/v1/webhook": {
                "get": {"operationId": "getWebhook", "summary": "The results webhook: receiver, pending events, dead letters and this node's delivery counts",
                    "responses": common(json!({"200": ok("The state.", "WebhookStatus")}))}
            },
            "/api/v1/webhook/dead-letters": {
                "get": {"operationId": "listWebhookDeadLetters", "summary": "Events given up on (attempts or age exhausted, or a full outbox), oldest first",
                    "parameters": [
                        {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": super::super::MAX_PAGE}},
                        {"name": "cursor", "in": "query", "required": false, "schema": {"type": "string"}}
                    ],
                    "responses": common(json!({"200": ok("A page.", "WebhookDeadLetterPage"), "400": err("Bad query parameter.")}))}
            },
            "/api/v1/webhook/dead-letters/{event_id}": {
                "get": {"operationId": "getWebhookDeadLetter", "summary": "One dead letter, with the body it was sent with", "parameters": [id_param()],
                    "responses": common(json!({"200": ok("The dead letter.", "WebhookDeadLetter"), "404": err("No such dead letter.")}))},
                "delete": {"operationId": "deleteWebhookDeadLetter", "summary": "Delete a dead letter", "parameters": [id_param()],
                    "responses": common(json!({"204": {"description": "Deleted."}, "404": err("No such dead letter.")}))}
            },
            "/api/v1/webhook/dead-letters/{event_id}/redeliver": {
                "post": {"operationId": "redeliverWebhookDeadLetter", "summary": "Queue a dead letter again, at the end of its device's outbox (same event_id and body)", "parameters": [id_param()],
                    "responses": common(json!({"202": ok("Queued.", "WebhookDeadLetter"), "404": err("No such dead letter."), "409": err("The device's outbox is full.")}))}
            }
        })
    }

    /// Schemas of the webhook routes.
    pub fn schemas() -> Value {
        let nstr = json!({"type": "string", "nullable": true});
        json!({
            "WebhookStatus": {"type": "object", "properties": {
                "configured": {"type": "boolean"}, "url": {"type": "string", "nullable": true, "description": "Without its query string."},
                "pending": {"type": "integer", "description": "Events waiting in every device's outbox."},
                "dead_letters": {"type": "integer"},
                "delivered": {"type": "integer", "description": "Acknowledged by this node since it started."},
                "failed": {"type": "integer", "description": "Failed attempts of this node since it started."},
                "dead_lettered": {"type": "integer", "description": "Dead-lettered by this node since it started."}
            }},
            "WebhookDeadLetter": {"type": "object", "properties": {
                "event_id": {"type": "string"}, "type": {"type": "string"}, "device_id": {"type": "string"},
                "created_at": {"type": "integer"}, "attempts": {"type": "integer"}, "last_error": nstr,
                "dead_at": {"type": "integer", "nullable": true}, "dead_reason": nstr,
                "body": {"type": "object", "description": "The JSON body POSTed to the receiver."}
            }},
            "WebhookDeadLetterPage": {"type": "object", "properties": {
                "dead_letters": {"type": "array", "items": {"$ref": "#/components/schemas/WebhookDeadLetter"}},
                "next": nstr
            }}
        })
    }
}
