//! Thin JSON handlers of `/api/v1/devices…`, `/api/v1/commands` and `/api/v1/jobs` over
//! [`crate::service::devices`].

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;

use super::{
    bad, json, json_body, json_body_limited, no_content, page_json, page_query, page_query_with,
    ApiError,
};
use crate::app::App;
use crate::http::body::Resp;
use crate::mdm::commands::NewCommand;
use crate::service::devices::{self as svc, Queued};
use crate::service::Actor;
use crate::store::normalize_upn;

pub(super) async fn list(app: &Arc<App>, query: &str) -> Result<Resp, ApiError> {
    let mut f = crate::store::DeviceFilter::default();
    let mut owner_status = None;
    let time = |what: &str| bad(format!("{what} must be a Unix time in seconds"));
    let (limit, cursor) = page_query_with(query, |k, v| {
        match k {
            "user" => f.upn = Some(normalize_upn(&v)),
            "owner_status" => {
                owner_status = Some(match v.as_str() {
                    "active" => crate::owner::OwnerStatus::Active,
                    "disabled" => crate::owner::OwnerStatus::Disabled,
                    "orphaned" => crate::owner::OwnerStatus::Orphaned,
                    "device_only" => crate::owner::OwnerStatus::DeviceOnly,
                    _ => {
                        return Err(bad(
                            "owner_status must be active, disabled, orphaned or device_only",
                        ))
                    }
                })
            }
            "state" => {
                f.state = Some(match v.as_str() {
                    "enrolled" => crate::store::DeviceState::Enrolled,
                    "unenrolled" => crate::store::DeviceState::Unenrolled,
                    _ => return Err(bad("state must be enrolled or unenrolled")),
                })
            }
            "device_type" => f.device_type = Some(v),
            "enrollment_type" => f.enrollment_type = Some(v),
            "os_edition" => f.os_edition = Some(v),
            "last_seen_before" => f.last_seen_before = Some(v.parse().map_err(|_| time(k))?),
            "last_seen_after" => f.last_seen_after = Some(v.parse().map_err(|_| time(k))?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let page = svc::list(app, cursor, limit, f, owner_status).await?;
    Ok(json(StatusCode::OK, &page))
}

pub(super) async fn get(app: &Arc<App>, id: &str) -> Result<Resp, ApiError> {
    Ok(json(StatusCode::OK, &svc::get(app, id).await?))
}

pub(super) async fn delete(app: &Arc<App>, actor: &Actor, id: &str) -> Result<Resp, ApiError> {
    svc::delete(app, actor, id).await?;
    Ok(no_content())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Upn {
    upn: String,
}

pub(super) async fn transfer(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let body: Upn = json_body(req).await?;
    Ok(json(
        StatusCode::OK,
        &svc::transfer(app, actor, id, &body.upn).await?,
    ))
}

pub(super) async fn assign_user(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let body: Upn = json_body(req).await?;
    Ok(json(
        StatusCode::OK,
        &svc::assign_user(app, actor, id, &body.upn).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAction {
    action: String,
}

pub(super) async fn create_action(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let na: NewAction = json_body(req).await?;
    let out = svc::request_action(app, actor, id, &na.action).await?;
    let mut body = serde_json::json!({ "action_id": out.action_id, "action": out.action });
    if out.existing {
        body["existing"] = true.into();
    }
    Ok(json(StatusCode::ACCEPTED, &body))
}

pub(super) async fn get_action(app: &Arc<App>, id: &str, aid: &str) -> Result<Resp, ApiError> {
    Ok(json(StatusCode::OK, &svc::get_action(app, id, aid).await?))
}

/// 201 `{"command_id"}` for a new command, 200 with `"existing": true` for a known id.
fn queued_response(q: &Queued) -> Resp {
    if q.existing {
        json(
            StatusCode::OK,
            &serde_json::json!({ "command_id": q.command_id, "existing": true }),
        )
    } else {
        json(
            StatusCode::CREATED,
            &serde_json::json!({ "command_id": q.command_id }),
        )
    }
}

pub(super) async fn create_command(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let nc: NewCommand = json_body(req).await?;
    Ok(queued_response(&svc::enqueue(app, actor, id, nc).await?))
}

pub(super) async fn list_commands(app: &Arc<App>, id: &str) -> Result<Resp, ApiError> {
    let views = svc::commands(app, id).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "commands": views }),
    ))
}

pub(super) async fn cancel_command(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    cid: &str,
) -> Result<Resp, ApiError> {
    svc::cancel_command(app, actor, id, cid).await?;
    Ok(no_content())
}

pub(super) async fn clear_commands(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
) -> Result<Resp, ApiError> {
    let n = svc::clear_commands(app, actor, id).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "cancelled": n })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantLockdown {
    require_network_in_oobe: bool,
}

pub(super) async fn tenant_lockdown(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let tl: TenantLockdown = json_body(req).await?;
    let q = svc::tenant_lockdown(app, actor, id, tl.require_network_in_oobe).await?;
    Ok(queued_response(&q))
}

pub(super) async fn bulk_command(
    app: &Arc<App>,
    actor: &Actor,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let mut v: serde_json::Map<String, serde_json::Value> =
        json_body_limited(req, 8 * 1024 * 1024).await?;
    let invalid = |e: serde_json::Error| bad(format!("invalid JSON: {e}"));
    let device_ids: Vec<String> = serde_json::from_value(
        v.remove("device_ids")
            .ok_or_else(|| bad("device_ids is required"))?,
    )
    .map_err(invalid)?;
    let command: NewCommand =
        serde_json::from_value(serde_json::Value::Object(v)).map_err(invalid)?;
    let out = svc::enqueue_many(app, actor, device_ids, command).await?;
    let results: serde_json::Map<String, serde_json::Value> = out
        .into_iter()
        .map(|(id, o)| (id, serde_json::to_value(o).unwrap_or_default()))
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "results": results }),
    ))
}

/// `GET /api/v1/devices/{device_id}/profiles`.
pub(super) async fn profiles(app: &Arc<App>, id: &str) -> Result<Resp, ApiError> {
    let list = svc::profiles(app, id).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({"profiles": list})))
}

/// `GET /api/v1/jobs?limit=&cursor=`: background jobs, in id order.
pub(super) async fn list_jobs(app: &Arc<App>, query: &str) -> Result<Resp, ApiError> {
    let (limit, cursor) = page_query(query)?;
    let page = svc::jobs(app, cursor, limit).await?;
    let jobs: Vec<serde_json::Value> = page.items.iter().map(crate::jobs::view).collect();
    Ok(page_json(
        "jobs",
        &crate::service::Page {
            items: jobs,
            next: page.next,
        },
    ))
}

/// `GET /api/v1/jobs/{id}`: a job's state and progress.
pub(super) async fn get_job(app: &Arc<App>, id: &str) -> Result<Resp, ApiError> {
    Ok(json(
        StatusCode::OK,
        &crate::jobs::view(&svc::job(app, id).await?),
    ))
}
