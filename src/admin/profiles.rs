//! Admin routes of configuration profiles (`/api/v1/profiles`), see [`crate::profiles`].
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

use super::{audit, blocking, json, json_body_limited, page_query, ApiError};
use crate::app::App;
use crate::http::routes::Resp;
use crate::jobs::{self, Job, JobKind};
use crate::profiles::{self, reconcile, ProfileInput, PROFILES};

/// Starts the reconciliation of profile `id` as a background job and waits up to `--job-wait-ms`
/// for it.
async fn reconcile_job(app: &Arc<App>, id: &str, reason: &str) -> Result<Job, ApiError> {
    let kind = JobKind::ReconcileProfile {
        profile_id: id.to_string(),
        reason: reason.to_string(),
    };
    let actor = super::tokens::current_actor();
    Ok(jobs::start_and_wait(app.clone(), kind, actor, app.cfg.job_wait).await?)
}

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
        _ => {
            return Err(ApiError::NotFound {
                what: "route".into(),
            })
        }
    })
}

pub(super) async fn handle(
    app: Arc<App>,
    ep: Ep<'_>,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let query = req.uri().query().unwrap_or("").to_string();
    match ep {
        Ep::Create => create(app, req).await,
        Ep::List => list(app, &query).await,
        Ep::Get(id) => get(app, id.to_string()).await,
        Ep::Patch(id) => update(app, id.to_string(), Some(req)).await,
        Ep::Push(id) => update(app, id.to_string(), None).await,
        Ep::Delete(id) => delete(app, id.to_string()).await,
        Ep::Assign(id) => assign(app, id.to_string(), req).await,
        Ep::Unassign(id, g) => unassign(app, id.to_string(), g.to_string()).await,
        Ep::Status(id) => status(app, id.to_string(), &query).await,
    }
}

async fn create(app: Arc<App>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let p: ProfileInput = json_body_limited(req, profiles::MAX_PROFILE_BODY).await?;
    let a = app.clone();
    let prof = blocking(move || Ok(profiles::create(&a, p)?)).await?;
    audit(
        &app,
        "profile.create",
        &prof.id,
        serde_json::json!({"name": prof.name, "scope": prof.scope, "operations": prof.operations.len()}),
    )
    .await;
    Ok(json(StatusCode::CREATED, &prof))
}

async fn list(app: Arc<App>, query: &str) -> Result<Resp, ApiError> {
    let (limit, cursor) = page_query(query)?;
    let (page, next) =
        blocking(move || Ok(PROFILES.page(app.store.records(), cursor.as_deref(), limit)?)).await?;
    let list: Vec<_> = page.into_iter().map(|(_, p)| p).collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"profiles": list, "next": next}),
    ))
}

async fn get(app: Arc<App>, id: String) -> Result<Resp, ApiError> {
    let v = blocking(move || {
        let p = profiles::get(&app, &id)?;
        let mut v = serde_json::to_value(&p).unwrap_or_default();
        v["assignments"] = serde_json::json!(profiles::assignments(&app, &id)?);
        Ok(v)
    })
    .await?;
    Ok(json(StatusCode::OK, &v))
}

/// PATCH (with a body) or push (without: same operations, new version).
async fn update(
    app: Arc<App>,
    id: String,
    req: Option<Request<Incoming>>,
) -> Result<Resp, ApiError> {
    let (input, push) = match req {
        Some(r) => (
            json_body_limited::<ProfileInput>(r, profiles::MAX_PROFILE_BODY).await?,
            false,
        ),
        None => (ProfileInput::default(), true),
    };
    let a = app.clone();
    let prof = blocking({
        let id = id.clone();
        move || Ok(profiles::update_record(&a, &id, input, push)?)
    })
    .await?;
    let job = reconcile_job(&app, &id, if push { "push" } else { "update" }).await?;
    audit(
        &app,
        if push {
            "profile.push"
        } else {
            "profile.update"
        },
        &id,
        serde_json::json!({"version": prof.version, "job_id": job.id, "devices": job.done, "queued": job.queued}),
    )
    .await;
    let mut v = serde_json::to_value(&prof).unwrap_or_default();
    v["reconciled"] = reconciled(&job);
    v["job"] = jobs::view(&job);
    Ok(json(job_status(&job, StatusCode::OK), &v))
}

async fn delete(app: Arc<App>, id: String) -> Result<Resp, ApiError> {
    let a = app.clone();
    blocking({
        let id = id.clone();
        move || Ok(profiles::delete_record(&a, &id)?)
    })
    .await?;
    let job = reconcile_job(&app, &id, "delete").await?;
    audit(
        &app,
        "profile.delete",
        &id,
        serde_json::json!({"job_id": job.id, "devices": job.done, "queued": job.queued}),
    )
    .await;
    if job.state == jobs::JobState::Done {
        return Ok(super::no_content());
    }
    Ok(json(
        StatusCode::ACCEPTED,
        &serde_json::json!({"job": jobs::view(&job)}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAssignment {
    group_id: String,
}

async fn assign(app: Arc<App>, id: String, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let body: NewAssignment = super::json_body(req).await?;
    let a = app.clone();
    let gid = body.group_id.clone();
    let created = blocking({
        let id = id.clone();
        move || Ok(profiles::assign_record(&a, &id, &gid)?)
    })
    .await?;
    let job = reconcile_job(&app, &id, "assign").await?;
    if created {
        audit(
            &app,
            "profile.assign",
            &id,
            serde_json::json!({"group_id": body.group_id, "job_id": job.id, "devices": job.done, "queued": job.queued}),
        )
        .await;
    }
    let out = serde_json::json!({"profile_id": id, "group_id": body.group_id, "devices": job.done, "queued": job.queued, "job": jobs::view(&job)});
    Ok(json(
        job_status(
            &job,
            if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
        ),
        &out,
    ))
}

async fn unassign(app: Arc<App>, id: String, gid: String) -> Result<Resp, ApiError> {
    let a = app.clone();
    blocking({
        let (id, gid) = (id.clone(), gid.clone());
        move || Ok(profiles::unassign_record(&a, &id, &gid)?)
    })
    .await?;
    let job = reconcile_job(&app, &id, "unassign").await?;
    audit(
        &app,
        "profile.unassign",
        &id,
        serde_json::json!({"group_id": gid, "job_id": job.id, "devices": job.done, "queued": job.queued}),
    )
    .await;
    let mut out = reconciled(&job);
    out["job"] = jobs::view(&job);
    Ok(json(job_status(&job, StatusCode::OK), &out))
}

async fn status(app: Arc<App>, id: String, query: &str) -> Result<Resp, ApiError> {
    let (limit, cursor) = page_query(query)?;
    let (list, next) = blocking(move || {
        profiles::get(&app, &id)?;
        Ok(reconcile::status_page(&app, &id, cursor.as_deref(), limit)?)
    })
    .await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"statuses": list, "next": next}),
    ))
}

/// `GET /api/v1/devices/{device_id}/profiles`.
pub(super) async fn device_profiles(app: Arc<App>, id: String) -> Result<Resp, ApiError> {
    let list = blocking(move || {
        let list = reconcile::device_status(&app, &id)?;
        if list.is_empty() && app.store.get_device(&id)?.is_none() {
            return Err(ApiError::NotFound {
                what: format!("device {id}"),
            });
        }
        Ok(list)
    })
    .await?;
    Ok(json(StatusCode::OK, &serde_json::json!({"profiles": list})))
}
