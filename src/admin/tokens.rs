//! Admin API credentials: the bearer token of each request, and the routes of named tokens
//! ([`crate::service::tokens`]).
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `/api/v1/tokens` `{"name", "role": "admin"\|"read-only"\|"metrics"}` | 201 with `token` (shown once); 400; 409 name taken |
//! | GET | `/api/v1/tokens?limit=&cursor=` | 200 `{"tokens": [{"name","role","created_at","created_by"}], "next"}` |
//! | DELETE | `/api/v1/tokens/{name}` | 204 (refused from the next request on); 404 |
//!
//! A `metrics` token may only read `GET /metrics` ([`crate::metrics::http`]). A `read-only`
//! token may call the GET routes except [`ADMIN_ONLY_GETS`] and gets 403 on everything else ([`authorize`] here, by route; the service checks the role again for every
//! change, [`crate::service::Actor::require_admin`]).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;

use super::{json, json_body, no_content, page_json, page_query, ApiError};
use crate::app::App;
use crate::http::body::Resp;
use crate::service::tokens as svc;
pub use crate::service::tokens::{digest, parse_token, TokenRecord, BOOTSTRAP, PREFIX, TOKENS};
pub use crate::service::{Actor, ServiceError, TokenRole};

/// GET routes a read-only token may not call (route templates; `{…}` matches one segment): the
/// bulk-enrollment package mints a credential (each package carries a new enrollment secret),
/// which is a change, not a read; a device trace shows everything the device reported and is
/// read by admins only (the service checks it again, `crate::service::traces`).
pub const ADMIN_ONLY_GETS: &[&str] = &[
    "/api/v1/bulk-enrollment/package",
    "/api/v1/devices/{device_id}/traces",
    "/api/v1/devices/{device_id}/traces/{trace_id}",
    "/api/v1/devices/{device_id}/traces/{trace_id}/export",
];

/// Whether `path` is an instance of the route template `t`.
fn instance_of(t: &str, path: &str) -> bool {
    let (ts, ps): (Vec<&str>, Vec<&str>) = (t.split('/').collect(), path.split('/').collect());
    ts.len() == ps.len()
        && ts
            .iter()
            .zip(&ps)
            .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}') && !p.is_empty()))
}

/// Authenticates the bearer token of `req` ([`crate::service::access::authenticate`]).
pub async fn authenticate(app: &Arc<App>, req: &Request<Incoming>) -> Result<Actor, ApiError> {
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let Some(token) = presented else {
        tracing::info!("admin request without a bearer token");
        return Err(ServiceError::Unauthorized.into());
    };
    Ok(crate::service::access::authenticate(app, token).await?)
}

/// Refuses what a read-only or metrics token may not do (403).
pub fn authorize(actor: &Actor, method: &Method, path: &str) -> Result<(), ApiError> {
    match actor.role {
        TokenRole::Admin => return Ok(()),
        TokenRole::Metrics => {
            return Err(ServiceError::Forbidden {
                reason: format!(
                    "token {:?} is a metrics token; it may only read /metrics",
                    actor.name
                ),
            }
            .into())
        }
        TokenRole::ReadOnly => {}
    }
    let path = path.trim_end_matches('/');
    if *method == Method::GET && !ADMIN_ONLY_GETS.iter().any(|t| instance_of(t, path)) {
        return Ok(());
    }
    Ok(actor.require_admin(&format!("{method} {path}"))?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: TokenRole,
}

/// `POST /api/v1/tokens`.
pub(super) async fn create(
    app: &Arc<App>,
    actor: &Actor,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let nt: NewToken = json_body(req).await?;
    let t = svc::create(app, actor, nt.name, nt.role).await?;
    let mut v = serde_json::to_value(&t.view).unwrap_or_default();
    v["token"] = t.token.into();
    Ok(json(StatusCode::CREATED, &v))
}

/// `GET /api/v1/tokens`.
pub(super) async fn list(app: &Arc<App>, query: &str) -> Result<Resp, ApiError> {
    let (limit, cursor) = page_query(query)?;
    Ok(page_json("tokens", &svc::list(app, cursor, limit).await?))
}

/// `DELETE /api/v1/tokens/{name}`: the record goes, so the token fails from the next request.
pub(super) async fn revoke(app: &Arc<App>, actor: &Actor, name: &str) -> Result<Resp, ApiError> {
    svc::revoke(app, actor, name.to_string()).await?;
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_may_only_read() {
        let ro = Actor {
            name: "r".into(),
            role: TokenRole::ReadOnly,
        };
        assert!(authorize(&ro, &Method::GET, "/api/v1/devices").is_ok());
        assert!(authorize(&ro, &Method::POST, "/api/v1/users").is_err());
        assert!(authorize(&ro, &Method::GET, "/api/v1/bulk-enrollment/package").is_err());
        let admin = Actor {
            name: "a".into(),
            role: TokenRole::Admin,
        };
        assert!(authorize(&admin, &Method::DELETE, "/api/v1/tokens/x").is_ok());
    }

    #[test]
    fn metrics_tokens_may_call_no_api_route() {
        let m = Actor {
            name: "prom".into(),
            role: TokenRole::Metrics,
        };
        assert!(authorize(&m, &Method::GET, "/api/v1/devices").is_err());
        assert!(authorize(&m, &Method::GET, "/api/v1/openapi.json").is_err());
        assert!(authorize(&m, &Method::POST, "/api/v1/users").is_err());
        assert!(m.require_admin("create a user").is_err());
        assert!(crate::metrics::http::may_scrape(TokenRole::Metrics));
        assert!(crate::metrics::http::may_scrape(TokenRole::ReadOnly));
    }
}
