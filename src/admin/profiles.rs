//! Thin JSON handlers of configuration profiles (`/api/v1/profiles`), over [`crate::service::groups`].
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `/api/v1/profiles` `{"name", "scope"?, "device_types"?, "syncml" \| "settings"}` | 201 profile; 400; 409 name taken |
//! | GET | `/api/v1/profiles?limit=&cursor=` | 200 `{"profiles": [...], "next"}` |
//! | GET | `/api/v1/profiles/{profile_id}` | 200 profile + `assignments`; 404 |
//! | PATCH | `/api/v1/profiles/{profile_id}` (fields of POST) | 200 profile + `reconciled` + `job` (new operations bump the version); 202 while the job runs on; 400; 404; 409 |
//! | DELETE | `/api/v1/profiles/{profile_id}` | 204 (devices get its settings deleted); 202 `{"job"}` while the job runs on; 404 |
//! | POST | `/api/v1/profiles/{profile_id}/assignments` `{"group_id"}` | 201 (200 if already assigned) `{"devices","queued","job"}`; 202 while the job runs on; 404 |
//! | DELETE | `/api/v1/profiles/{profile_id}/assignments/{group_id}` | 200 `{"devices","queued","job"}`; 202 while the job runs on; 404 |
//! | POST | `/api/v1/profiles/{profile_id}/push` | 200 profile (version bumped) + `reconciled` + `job`; 202 while the job runs on |
//!
//! Every change reconciles the devices in a background job ([`crate::jobs`]); the request waits
//! up to `--job-wait-ms` for it.
//! | GET | `/api/v1/profiles/{profile_id}/status?limit=&cursor=` | 200 `{"statuses": [...], "next"}` |
//! | GET | `/api/v1/devices/{device_id}/profiles` | 200 `{"profiles": [status...]}`; 404 |

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;

use super::{
    json, json_body, json_body_limited, no_content, not_found, page_json, page_query, ApiError,
};
use crate::app::App;
use crate::http::body::Resp;
use crate::jobs::{self, Job};
use crate::profiles::{self, ProfileInput};
use crate::service::groups as svc;
use crate::service::Actor;

/// `{"devices", "queued"}` as far as the job got.
fn reconciled(j: &Job) -> serde_json::Value {
    serde_json::json!({"devices": j.done, "queued": j.queued})
}

/// 200 (or `done`) when the job finished within the wait, 202 while it runs on.
fn job_status(j: &Job, done: StatusCode) -> StatusCode {
    if j.state == jobs::JobState::Done {
        done
    } else {
        StatusCode::ACCEPTED
    }
}

/// A matched profile route.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ep<'a> {
    Create,
    List,
    Get(&'a str),
    Patch(&'a str),
    Delete(&'a str),
    Assign(&'a str),
    Unassign(&'a str, &'a str),
    Push(&'a str),
    Status(&'a str),
}

/// Routes under `/api/v1/profiles`.
pub(super) fn endpoint<'a>(segs: &[&'a str], method: &Method) -> Result<Ep<'a>, ApiError> {
    Ok(match (segs, method.clone()) {
        (["profiles"], Method::POST) => Ep::Create,
        (["profiles"], Method::GET) => Ep::List,
        (["profiles", id], Method::GET) => Ep::Get(id),
        (["profiles", id], Method::PATCH) => Ep::Patch(id),
        (["profiles", id], Method::DELETE) => Ep::Delete(id),
        (["profiles", id, "assignments"], Method::POST) => Ep::Assign(id),
        (["profiles", id, "assignments", g], Method::DELETE) => Ep::Unassign(id, g),
        (["profiles", id, "push"], Method::POST) => Ep::Push(id),
        (["profiles", id, "status"], Method::GET) => Ep::Status(id),
        (
            ["profiles"]
            | ["profiles", _]
            | ["profiles", _, "assignments"]
            | ["profiles", _, "assignments", _]
            | ["profiles", _, "push"]
            | ["profiles", _, "status"],
            _,
        ) => return Err(ApiError::MethodNotAllowed),
        _ => return Err(not_found("route")),
    })
}

pub(super) async fn handle(
    app: &Arc<App>,
    actor: &Actor,
    ep: Ep<'_>,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let query = req.uri().query().unwrap_or("").to_string();
    match ep {
        Ep::Create => {
            let p: ProfileInput = json_body_limited(req, profiles::MAX_PROFILE_BODY).await?;
            Ok(json(
                StatusCode::CREATED,
                &svc::create_profile(app, actor, p).await?,
            ))
        }
        Ep::List => {
            let (limit, cursor) = page_query(&query)?;
            Ok(page_json(
                "profiles",
                &svc::list_profiles(app, cursor, limit).await?,
            ))
        }
        Ep::Get(id) => Ok(json(StatusCode::OK, &svc::get_profile(app, id).await?)),
        Ep::Patch(id) => {
            let p: ProfileInput = json_body_limited(req, profiles::MAX_PROFILE_BODY).await?;
            update(app, actor, id, Some(p)).await
        }
        Ep::Push(id) => update(app, actor, id, None).await,
        Ep::Delete(id) => {
            let job = svc::delete_profile(app, actor, id).await?;
            if job.state == jobs::JobState::Done {
                return Ok(no_content());
            }
            Ok(json(
                StatusCode::ACCEPTED,
                &serde_json::json!({"job": jobs::view(&job)}),
            ))
        }
        Ep::Assign(id) => {
            let body: NewAssignment = json_body(req).await?;
            let (created, job) = svc::assign(app, actor, id, &body.group_id).await?;
            let out = serde_json::json!({"profile_id": id, "group_id": body.group_id, "devices": job.done, "queued": job.queued, "job": jobs::view(&job)});
            let done = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(json(job_status(&job, done), &out))
        }
        Ep::Unassign(id, g) => {
            let job = svc::unassign(app, actor, id, g).await?;
            let mut out = reconciled(&job);
            out["job"] = jobs::view(&job);
            Ok(json(job_status(&job, StatusCode::OK), &out))
        }
        Ep::Status(id) => {
            let (limit, cursor) = page_query(&query)?;
            Ok(page_json(
                "statuses",
                &svc::profile_status(app, id, cursor, limit).await?,
            ))
        }
    }
}

/// PATCH (with a body) or push (without: same operations, new version).
async fn update(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    input: Option<ProfileInput>,
) -> Result<Resp, ApiError> {
    let ch = svc::update_profile(app, actor, id, input).await?;
    let mut v = serde_json::to_value(&ch.profile).unwrap_or_default();
    v["reconciled"] = reconciled(&ch.job);
    v["job"] = jobs::view(&ch.job);
    Ok(json(job_status(&ch.job, StatusCode::OK), &v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAssignment {
    group_id: String,
}
