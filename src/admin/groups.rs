//! Admin routes of device groups (`/api/v1/groups`), see [`crate::groups`].
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `/api/v1/groups` `{"name", "description"?, "query"?}` | 201 group + `evaluation`; 400 (query errors give the column); 409 name taken |
//! | GET | `/api/v1/groups?limit=&cursor=` | 200 `{"groups": [...], "next"}` |
//! | GET | `/api/v1/groups/{group_id}` | 200 group + `profiles`; 404 |
//! | PATCH | `/api/v1/groups/{group_id}` `{"name"?, "description"?, "query"?}` | 200 group + `evaluation`; 400; 404; 409 |
//! | DELETE | `/api/v1/groups/{group_id}` | 204 (members' profiles from it are removed); 404 |
//! | GET | `/api/v1/groups/{group_id}/members?limit=&cursor=` | 200 `{"members": [{"device_id","since"}], "next"}` |
//! | POST / DELETE | `/api/v1/groups/{group_id}/members` `{"device_ids": [...]}` | 200 evaluation; 404 unknown device; 409 dynamic group |

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;

use super::{audit, blocking, json, json_body, page_query, ApiError};
use crate::app::App;
use crate::groups::{self, GroupError, GROUPS};
use crate::http::routes::Resp;

impl From<GroupError> for ApiError {
    fn from(e: GroupError) -> ApiError {
        match e {
            GroupError::Invalid(reason) => ApiError::BadRequest { reason },
            GroupError::Query(q) => ApiError::BadRequest {
                reason: q.to_string(),
            },
            GroupError::NotFound(what) => ApiError::NotFound { what },
            GroupError::Conflict(reason) => ApiError::ConflictState { reason },
            GroupError::Store(e) => e.into(),
        }
    }
}

/// A matched group route.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ep<'a> {
    Create,
    List,
    Get(&'a str),
    Patch(&'a str),
    Delete(&'a str),
    Members(&'a str),
    AddMembers(&'a str),
    RemoveMembers(&'a str),
}

/// Routes under `/api/v1/groups`.
pub(super) fn endpoint<'a>(segs: &[&'a str], method: &Method) -> Result<Ep<'a>, ApiError> {
    Ok(match (segs, method.clone()) {
        (["groups"], Method::POST) => Ep::Create,
        (["groups"], Method::GET) => Ep::List,
        (["groups", id], Method::GET) => Ep::Get(id),
        (["groups", id], Method::PATCH) => Ep::Patch(id),
        (["groups", id], Method::DELETE) => Ep::Delete(id),
        (["groups", id, "members"], Method::GET) => Ep::Members(id),
        (["groups", id, "members"], Method::POST) => Ep::AddMembers(id),
        (["groups", id, "members"], Method::DELETE) => Ep::RemoveMembers(id),
        (["groups"] | ["groups", _] | ["groups", _, "members"], _) => {
            return Err(ApiError::MethodNotAllowed)
        }
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
        Ep::Patch(id) => patch(app, id.to_string(), req).await,
        Ep::Delete(id) => delete(app, id.to_string()).await,
        Ep::Members(id) => members(app, id.to_string(), &query).await,
        Ep::AddMembers(id) => set_members(app, id.to_string(), req, true).await,
        Ep::RemoveMembers(id) => set_members(app, id.to_string(), req, false).await,
    }
}

async fn create(app: Arc<App>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let ng: groups::NewGroup = json_body(req).await?;
    let a = app.clone();
    let (g, ev) = blocking(move || Ok(groups::create(&a, ng)?)).await?;
    audit(
        &app,
        "group.create",
        &g.id,
        serde_json::json!({"name": g.name, "query": g.query, "joined": ev.joined}),
    )
    .await;
    let mut v = serde_json::to_value(&g).unwrap_or_default();
    v["evaluation"] = serde_json::to_value(&ev).unwrap_or_default();
    Ok(json(StatusCode::CREATED, &v))
}

async fn list(app: Arc<App>, query: &str) -> Result<Resp, ApiError> {
    let (limit, cursor) = page_query(query)?;
    let (page, next) =
        blocking(move || Ok(GROUPS.page(app.store.records(), cursor.as_deref(), limit)?)).await?;
    let groups: Vec<_> = page.into_iter().map(|(_, g)| g).collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"groups": groups, "next": next}),
    ))
}

async fn get(app: Arc<App>, id: String) -> Result<Resp, ApiError> {
    let v = blocking(move || {
        let g = groups::get(&app, &id)?;
        let profiles: Vec<String> =
            groups::scan_all_pairs(app.store.records(), crate::profiles::GROUP_PROFILES, &id)?
                .into_iter()
                .map(|(p, _)| p)
                .collect();
        let mut v = serde_json::to_value(&g).unwrap_or_default();
        v["profiles"] = serde_json::json!(profiles);
        Ok(v)
    })
    .await?;
    Ok(json(StatusCode::OK, &v))
}

async fn patch(app: Arc<App>, id: String, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let p: groups::GroupPatch = json_body(req).await?;
    if p.name.is_none() && p.description.is_none() && p.query.is_none() {
        return Err(ApiError::BadRequest {
            reason: "give name, description and/or query".into(),
        });
    }
    let a = app.clone();
    let (g, ev) = blocking({
        let id = id.clone();
        move || Ok(groups::patch(&a, &id, p)?)
    })
    .await?;
    audit(
        &app,
        "group.update",
        &id,
        serde_json::json!({"name": g.name, "query": g.query, "joined": ev.joined, "left": ev.left}),
    )
    .await;
    let mut v = serde_json::to_value(&g).unwrap_or_default();
    v["evaluation"] = serde_json::to_value(&ev).unwrap_or_default();
    Ok(json(StatusCode::OK, &v))
}

async fn delete(app: Arc<App>, id: String) -> Result<Resp, ApiError> {
    let a = app.clone();
    let ev = blocking({
        let id = id.clone();
        move || Ok(groups::delete(&a, &id)?)
    })
    .await?;
    audit(
        &app,
        "group.delete",
        &id,
        serde_json::json!({"members": ev.left, "queued": ev.queued}),
    )
    .await;
    Ok(super::no_content())
}

async fn members(app: Arc<App>, id: String, query: &str) -> Result<Resp, ApiError> {
    let (limit, cursor) = page_query(query)?;
    let (page, next) =
        blocking(move || Ok(groups::members(&app, &id, cursor.as_deref(), limit)?)).await?;
    let members: Vec<_> = page
        .into_iter()
        .map(|(d, m)| serde_json::json!({"device_id": d, "since": m.since}))
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"members": members, "next": next}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceIds {
    device_ids: Vec<String>,
}

async fn set_members(
    app: Arc<App>,
    id: String,
    req: Request<Incoming>,
    add: bool,
) -> Result<Resp, ApiError> {
    let body: DeviceIds = super::json_body_limited(req, 2 * 1024 * 1024).await?;
    let a = app.clone();
    let ev = blocking({
        let id = id.clone();
        move || Ok(groups::set_static(&a, &id, &body.device_ids, add)?)
    })
    .await?;
    audit(
        &app,
        if add {
            "group.members.add"
        } else {
            "group.members.remove"
        },
        &id,
        serde_json::json!({"changed": ev.joined + ev.left, "queued": ev.queued}),
    )
    .await;
    Ok(json(StatusCode::OK, &ev))
}
