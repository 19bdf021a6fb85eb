//! Thin JSON handlers of device groups (`/api/v1/groups`), over [`crate::service::groups`].
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

use super::{
    json, json_body, json_body_limited, no_content, not_found, page_json, page_query, ApiError,
};
use crate::app::App;
use crate::http::body::Resp;
use crate::service::groups as svc;
use crate::service::Actor;

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
            let ng = json_body(req).await?;
            Ok(json(
                StatusCode::CREATED,
                &svc::create(app, actor, ng).await?,
            ))
        }
        Ep::List => {
            let (limit, cursor) = page_query(&query)?;
            Ok(page_json("groups", &svc::list(app, cursor, limit).await?))
        }
        Ep::Get(id) => Ok(json(StatusCode::OK, &svc::get(app, id).await?)),
        Ep::Patch(id) => {
            let p = json_body(req).await?;
            Ok(json(StatusCode::OK, &svc::patch(app, actor, id, p).await?))
        }
        Ep::Delete(id) => {
            svc::delete(app, actor, id).await?;
            Ok(no_content())
        }
        Ep::Members(id) => {
            let (limit, cursor) = page_query(&query)?;
            Ok(page_json(
                "members",
                &svc::members(app, id, cursor, limit).await?,
            ))
        }
        Ep::AddMembers(id) => set_members(app, actor, id, req, true).await,
        Ep::RemoveMembers(id) => set_members(app, actor, id, req, false).await,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceIds {
    device_ids: Vec<String>,
}

async fn set_members(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    req: Request<Incoming>,
    add: bool,
) -> Result<Resp, ApiError> {
    let body: DeviceIds = json_body_limited(req, 2 * 1024 * 1024).await?;
    let ev = svc::set_members(app, actor, id, body.device_ids, add).await?;
    Ok(json(StatusCode::OK, &ev))
}
