//! Thin JSON handlers of `/api/v1/users` and `/api/v1/audit` over [`crate::service::users`].

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;

use super::{bad, json, json_body, no_content, page_json, page_query, ApiError};
use crate::app::App;
use crate::http::body::Resp;
use crate::service::users::{self as svc, UserPatch};
use crate::service::Actor;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    upn: String,
    password: String,
}

pub(super) async fn create(
    app: &Arc<App>,
    actor: &Actor,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let nu: NewUser = json_body(req).await?;
    let user = svc::create(app, actor, &nu.upn, nu.password).await?;
    Ok(json(StatusCode::CREATED, &user))
}

pub(super) async fn list(app: &Arc<App>, query: &str) -> Result<Resp, ApiError> {
    let (limit, cursor) = page_query(query)?;
    Ok(page_json(
        "users",
        &svc::list(app, cursor, limit, None).await?,
    ))
}

pub(super) async fn get(app: &Arc<App>, upn: &str) -> Result<Resp, ApiError> {
    Ok(json(StatusCode::OK, &svc::get(app, upn).await?))
}

pub(super) async fn patch(
    app: &Arc<App>,
    actor: &Actor,
    upn: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let p: UserPatch = json_body(req).await?;
    Ok(json(
        StatusCode::OK,
        &svc::update(app, actor, upn, p).await?,
    ))
}

pub(super) async fn delete(app: &Arc<App>, actor: &Actor, upn: &str) -> Result<Resp, ApiError> {
    svc::delete(app, actor, upn).await?;
    Ok(no_content())
}

pub(super) async fn audit_log(app: &Arc<App>, query: &str) -> Result<Resp, ApiError> {
    let (limit, cursor) = page_query(query)?;
    let after = cursor
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| bad("cursor must be the next of a previous page"))
        })
        .transpose()?;
    Ok(json(
        StatusCode::OK,
        &svc::audit_log(app, after, limit).await?,
    ))
}
