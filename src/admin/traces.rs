//! Admin API of device traces (rules in [`crate::service::traces`]; the format in
//! `docs/TRACES.md`). Every route needs an admin token; reads and exports are audited.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `/api/v1/devices/{device_id}/trace` `{"minutes"?, "sessions"?, "note"?}` (empty body: 60 min, 10 sessions) | 201 trace summary; 404; 409 already traced |
//! | DELETE | `/api/v1/devices/{device_id}/trace` | 200 the stopped trace's summary; 404 not traced |
//! | GET | `/api/v1/devices/{device_id}/traces` | 200 `{"traces": [...]}` newest first |
//! | GET | `/api/v1/devices/{device_id}/traces/{trace_id}` | 200 `{"trace": summary, "conversation": [...]}`; 404 |
//! | GET | `/api/v1/devices/{device_id}/traces/{trace_id}/export` | 200 `application/x-ndjson` file; 404 |
//! | DELETE | `/api/v1/devices/{device_id}/traces/{trace_id}` | 204; 404 |
//! | POST | `/api/v1/groups/{group_id}/trace` (same body) | 201 `{"traces": [...], "skipped": [...]}`; 404 |
//! | POST | `/api/v1/users/{upn}/trace` `{"enrollments"?, "minutes"?, "sessions"?, "note"?}` | 201 the rule; 404 |
//! | DELETE | `/api/v1/users/{upn}/trace` | 204; 404 |

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_DISPOSITION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::{json, no_content, not_found, optional_json_body, ApiError};
use crate::app::App;
use crate::http::routes::Resp;
use crate::service::traces::{self as svc, StartTrace};
use crate::service::Actor;

/// Largest request body (the start options).
const MAX_BODY: usize = 4 * 1024;

/// A matched trace route.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// POST `/devices/{id}/trace`.
    Start(&'a str),
    /// DELETE `/devices/{id}/trace`.
    Stop(&'a str),
    /// GET `/devices/{id}/traces`.
    List(&'a str),
    /// GET `/devices/{id}/traces/{trace}`.
    Get(&'a str, &'a str),
    /// GET `/devices/{id}/traces/{trace}/export`.
    Export(&'a str, &'a str),
    /// DELETE `/devices/{id}/traces/{trace}`.
    Delete(&'a str, &'a str),
    /// POST `/groups/{id}/trace`.
    StartGroup(&'a str),
    /// POST `/users/{upn}/trace`.
    StartUser(&'a str),
    /// DELETE `/users/{upn}/trace`.
    StopUser(&'a str),
}

/// Matches the whole segment list (`devices/...` or `groups/.../trace`); `None` when the path
/// is not a trace route.
pub fn endpoint<'a>(segs: &[&'a str], method: &Method) -> Option<Result<Route<'a>, ApiError>> {
    use Route as R;
    Some(Ok(match (segs, method.clone()) {
        (["devices", id, "trace"], Method::POST) => R::Start(id),
        (["devices", id, "trace"], Method::DELETE) => R::Stop(id),
        (["devices", id, "traces"], Method::GET) => R::List(id),
        (["devices", id, "traces", t], Method::GET) => R::Get(id, t),
        (["devices", id, "traces", t], Method::DELETE) => R::Delete(id, t),
        (["devices", id, "traces", t, "export"], Method::GET) => R::Export(id, t),
        (["groups", id, "trace"], Method::POST) => R::StartGroup(id),
        (["users", upn, "trace"], Method::POST) => R::StartUser(upn),
        (["users", upn, "trace"], Method::DELETE) => R::StopUser(upn),
        (
            ["devices", _, "trace"]
            | ["devices", _, "traces"]
            | ["devices", _, "traces", _]
            | ["devices", _, "traces", _, "export"]
            | ["groups", _, "trace"]
            | ["users", _, "trace"],
            _,
        ) => return Some(Err(ApiError::MethodNotAllowed)),
        _ => return None,
    }))
}

/// Runs one trace route.
pub async fn handle(
    app: &Arc<App>,
    actor: &Actor,
    r: Route<'_>,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    match r {
        Route::Start(id) => {
            let opts: StartTrace = optional_json_body(req, MAX_BODY).await?;
            Ok(json(
                StatusCode::CREATED,
                &svc::start(app, actor, id, opts).await?,
            ))
        }
        Route::StartGroup(id) => {
            let opts: StartTrace = optional_json_body(req, MAX_BODY).await?;
            let (traces, skipped) = svc::start_group(app, actor, id, opts).await?;
            Ok(json(
                StatusCode::CREATED,
                &json!({ "traces": traces, "skipped": skipped }),
            ))
        }
        Route::StartUser(upn) => {
            let opts: svc::StartUserTrace = optional_json_body(req, MAX_BODY).await?;
            Ok(json(
                StatusCode::CREATED,
                &svc::start_user(app, actor, upn, opts).await?,
            ))
        }
        Route::StopUser(upn) => {
            svc::stop_user(app, actor, upn).await?;
            Ok(no_content())
        }
        Route::Stop(id) => Ok(json(StatusCode::OK, &svc::stop(app, actor, id).await?)),
        Route::List(id) => Ok(json(
            StatusCode::OK,
            &json!({ "traces": svc::list(app, actor, id).await? }),
        )),
        Route::Get(id, t) => {
            let (meta, turns) = svc::get(app, actor, id, t).await?;
            Ok(json(
                StatusCode::OK,
                &json!({ "trace": meta, "conversation": turns }),
            ))
        }
        Route::Export(id, t) => {
            let text = svc::export(app, actor, id, t).await?;
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            let name = format!("attachment; filename=\"winmdm-trace-{t}.ndjson\"");
            let v = HeaderValue::from_str(&name).map_err(|_| not_found("trace"))?;
            r.headers_mut().insert(CONTENT_DISPOSITION, v);
            Ok(r)
        }
        Route::Delete(id, t) => {
            svc::delete(app, actor, id, t).await?;
            Ok(no_content())
        }
    }
}

/// The OpenAPI description of the trace routes.
pub mod openapi {
    use serde_json::{json, Value};

    use crate::admin::openapi::{common, err, ok};

    fn device() -> Value {
        json!({"name": "device_id", "in": "path", "required": true, "schema": {"type": "string"}})
    }

    fn trace() -> Value {
        json!({"name": "trace_id", "in": "path", "required": true, "schema": {"type": "string"}})
    }

    fn start_body() -> Value {
        json!({"required": false, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StartTrace"}}}})
    }

    /// Paths of the trace routes.
    pub fn paths() -> Value {
        json!({
            "/api/v1/devices/{device_id}/trace": {
                "post": {"operationId": "startDeviceTrace", "summary": "Record the device's next exchanges (enrollment, renewal, OMA-DM) for a window of minutes or a number of sessions; secrets are redacted before anything is written. Admin only; audited.",
                    "parameters": [device()], "requestBody": start_body(),
                    "responses": common(json!({"201": ok("The trace.", "TraceSummary"), "400": err("Bad window or note."), "404": err("No such device."), "409": err("Already traced, or too many devices traced.")}))},
                "delete": {"operationId": "stopDeviceTrace", "summary": "Stop recording (the trace is kept). Admin only; audited.", "parameters": [device()],
                    "responses": common(json!({"200": ok("The stopped trace.", "TraceSummary"), "404": err("The device is not being traced.")}))}
            },
            "/api/v1/devices/{device_id}/traces": {
                "get": {"operationId": "listDeviceTraces", "summary": "The device's traces, newest first. Admin only.", "parameters": [device()],
                    "responses": common(json!({"200": ok("The traces.", "TraceList")}))}
            },
            "/api/v1/devices/{device_id}/traces/{trace_id}": {
                "get": {"operationId": "getDeviceTrace", "summary": "One trace as a conversation: each exchange's commands in order, our commands' Status codes with their meanings, large objects reassembled, timings, the queued commands each answer delivered. Admin only; audited.",
                    "parameters": [device(), trace()],
                    "responses": common(json!({"200": ok("The trace.", "TraceConversation"), "404": err("No such trace.")}))},
                "delete": {"operationId": "deleteDeviceTrace", "summary": "Delete a trace (stops it first). Admin only; audited.", "parameters": [device(), trace()],
                    "responses": common(json!({"204": {"description": "Deleted."}, "404": err("No such trace.")}))}
            },
            "/api/v1/devices/{device_id}/traces/{trace_id}/export": {
                "get": {"operationId": "exportDeviceTrace", "summary": "The trace as one file in the winmdm-trace v1 format (NDJSON, docs/TRACES.md), for `winmdm trace replay`. Admin only; audited.",
                    "parameters": [device(), trace()],
                    "responses": common(json!({"200": {"description": "The file (`Content-Disposition: attachment`).", "content": {"application/x-ndjson": {"schema": {"type": "string"}}}}, "404": err("No such trace.")}))}
            },
            "/api/v1/users/{upn}/trace": {
                "post": {"operationId": "startUserEnrollmentTrace", "summary": "Trace the user's next enrollments: each successful enrollment of a device the user owns starts a device trace holding that enrollment, the discovery and policy exchanges before it (matched by client address) and the sessions after it. Admin only; audited.",
                    "parameters": [{"name": "upn", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "requestBody": {"required": false, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StartUserTrace"}}}},
                    "responses": common(json!({"201": ok("The rule.", "UserTraceRule"), "400": err("Bad options."), "404": err("No such user."), "409": err("Too many users traced.")}))},
                "delete": {"operationId": "stopUserEnrollmentTrace", "summary": "Stop tracing the user's next enrollments. Admin only; audited.",
                    "parameters": [{"name": "upn", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "responses": common(json!({"204": {"description": "Stopped."}, "404": err("No rule for this user.")}))}
            },
            "/api/v1/groups/{group_id}/trace": {
                "post": {"operationId": "startGroupTrace", "summary": "Start a trace for every member of a group (at most 1,000); members already traced are skipped. Admin only; audited.",
                    "parameters": [{"name": "group_id", "in": "path", "required": true, "schema": {"type": "string"}}], "requestBody": start_body(),
                    "responses": common(json!({"201": ok("The traces started and the members skipped.", "GroupTraceStart"), "400": err("Bad window, or a group too large."), "404": err("No such group.")}))}
            }
        })
    }

    /// Schemas of the trace routes.
    pub fn schemas() -> Value {
        let nstr = json!({"type": "string", "nullable": true});
        json!({
            "StartTrace": {"type": "object", "additionalProperties": false, "properties": {
                "minutes": {"type": "integer", "minimum": 1, "maximum": crate::trace::MAX_DURATION_SECS / 60, "description": "Recording window (default 60)."},
                "sessions": {"type": "integer", "minimum": 1, "maximum": crate::trace::MAX_SESSIONS, "description": "OMA-DM sessions to record (default 10)."},
                "note": {"type": "string", "maxLength": crate::trace::MAX_NOTE}
            }},
            "TraceSummary": {"type": "object", "properties": {
                "id": {"type": "string"}, "device_id": {"type": "string"}, "started_at": {"type": "integer"}, "started_by": {"type": "string"},
                "until": {"type": "integer"}, "max_sessions": {"type": "integer"}, "sessions": {"type": "integer"}, "last_session": nstr,
                "exchanges": {"type": "integer"}, "bytes": {"type": "integer"}, "updated_at": {"type": "integer"},
                "stopped": {"type": "string", "nullable": true, "enum": ["expired", "sessions", "full", "admin", "device_deleted", null]},
                "note": nstr
            }},
            "StartUserTrace": {"type": "object", "additionalProperties": false, "properties": {
                "enrollments": {"type": "integer", "minimum": 1, "maximum": crate::trace::MAX_USER_ENROLLMENTS, "description": "Enrollments to trace (default 1)."},
                "minutes": {"type": "integer", "minimum": 1, "maximum": crate::trace::MAX_DURATION_SECS / 60},
                "sessions": {"type": "integer", "minimum": 1, "maximum": crate::trace::MAX_SESSIONS},
                "note": {"type": "string", "maxLength": crate::trace::MAX_NOTE}
            }},
            "UserTraceRule": {"type": "object", "properties": {
                "enrollments_left": {"type": "integer"}, "window_secs": {"type": "integer"}, "max_sessions": {"type": "integer"},
                "until": {"type": "integer"}, "started_by": {"type": "string"}, "note": nstr
            }},
            "TraceList": {"type": "object", "properties": {"traces": {"type": "array", "items": {"$ref": "#/components/schemas/TraceSummary"}}}},
            "TraceConversation": {"type": "object", "properties": {
                "trace": {"$ref": "#/components/schemas/TraceSummary"},
                "conversation": {"type": "array", "items": {"type": "object", "description": "One exchange: seq, at_ms, endpoint, status, took_us, correlated, session_id, device and server sides (summary, commands with answer {code, meaning}, objects), delivered."}}
            }},
            "GroupTraceStart": {"type": "object", "properties": {
                "traces": {"type": "array", "items": {"$ref": "#/components/schemas/TraceSummary"}},
                "skipped": {"type": "array", "items": {"type": "string"}}
            }}
        })
    }
}
