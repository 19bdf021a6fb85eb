//! Thin JSON handlers of one-time enrollment invitations ([`crate::service::invitations`]).
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `/api/v1/invitations` `{"upn", "expires_in_hours"?, "send_email"?}` | 201 `{"id","upn","expires_at","deep_link","landing_url","message","sent"}`; 400; 404 unknown user; 409 disabled |
//! | GET | `/api/v1/invitations?limit=&cursor=` | 200 `{"invitations": [...], "next"}` (oldest first) |
//! | DELETE | `/api/v1/invitations/{id}` | 204 revoked; 404; 409 already used or revoked |

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::{json, json_body, no_content, page_json, page_query, ApiError};
use crate::app::App;
use crate::http::body::Resp;
use crate::service::invitations::{self as svc, NewInvitation};
pub use crate::service::invitations::{
    find_by_token, Invitation, InvitationState, DEFAULT_HOURS, INVITES, LANDING_PREFIX, MAX_HOURS,
};
use crate::service::Actor;

/// `POST /api/v1/invitations`.
pub(super) async fn create(
    app: &Arc<App>,
    actor: &Actor,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let ni: NewInvitation = json_body(req).await?;
    Ok(json(
        StatusCode::CREATED,
        &svc::create(app, actor, ni).await?,
    ))
}

/// `GET /api/v1/invitations`.
pub(super) async fn list(app: &Arc<App>, query: &str) -> Result<Resp, ApiError> {
    let (limit, cursor) = page_query(query)?;
    Ok(page_json(
        "invitations",
        &svc::list(app, cursor, limit).await?,
    ))
}

/// `DELETE /api/v1/invitations/{id}`.
pub(super) async fn revoke(app: &Arc<App>, actor: &Actor, id: &str) -> Result<Resp, ApiError> {
    svc::revoke(app, actor, id).await?;
    Ok(no_content())
}
