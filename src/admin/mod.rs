//! The admin JSON API under `/api/v1`, behind the bearer token.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `/api/v1/users` `{"upn","password"}` | 201 user; 409 exists; 400 invalid |
//! | GET | `/api/v1/users?limit=&cursor=` | 200 `{"users": [...], "next"}` |
//! | GET | `/api/v1/users/{upn}` | 200 user + `devices`; 404 unknown |
//! | PATCH | `/api/v1/users/{upn}` `{"password"?, "disabled"?}` | 200 user; 400; 404 |
//! | DELETE | `/api/v1/users/{upn}` | 204; 404 unknown |
//! | GET | `/api/v1/devices?limit=&cursor=` | 200 `{"devices": [...], "next": "..."\|null}` |
//! | GET | `/api/v1/devices/{device_id}` | 200 device + `queue` summary + `certificate` (+ `previous_cert` and `renewals` after a certificate renewal); 404 unknown |
//! | DELETE | `/api/v1/devices/{device_id}` | 204 (queue cancelled, sessions dropped, cert and any renewal-pending old cert revoked); 404 |
//! | PUT | `/api/v1/devices/{id}/owner` `{"upn"}` | 200 device: handed to that user (audited `device.transfer`); 404 unknown device or user; 409 disabled user ([`owner`]) |
//! | POST | `/api/v1/devices/{id}/actions` `{"action"}` | 202 `{"action_id"}` (+ `"existing"`); 400; 404; 409 |
//! | GET | `/api/v1/devices/{id}/actions/{action_id}` | 200 action state; 404 |
//! | GET | `/api/v1/audit?limit=&cursor=` | 200 `{"entries": [...], "next"}` |
//! | POST | `/api/v1/devices/{id}/commands` | 201 `{"command_id"}` (200 if that id exists); 400; 404 |
//! | GET | `/api/v1/devices/{id}/commands` | 200 `{"commands": [...]}` (answered ones for `--command-retention`) |
//! | DELETE | `/api/v1/devices/{id}/commands/{command_id}` | 204; 404; 409 already answered |
//! | DELETE | `/api/v1/devices/{id}/commands` | 200 `{"cancelled": n}` |
//! | POST | `/api/v1/commands` `{"device_ids": [...], <command>}` | 200 `{"results": {id: {"command_id","existing"} \| {"error"}}}` |
//! | PUT | `/api/v1/devices/{id}/tenant-lockdown` `{"require_network_in_oobe": bool}` | 201 `{"command_id"}` |
//! | … | `/api/v1/groups…`, `/api/v1/profiles…`, `GET /api/v1/devices/{id}/profiles` | device groups and profiles: tables in [`groups`] and [`profiles`] |
//! | GET | `/api/v1/openapi.json` | 200 the OpenAPI 3.0 document of this API ([`openapi`]) |
//! | POST, GET, DELETE | `/api/v1/tokens[/{name}]` | named tokens with a role ([`tokens`]) |
//! | POST, GET, DELETE | `/api/v1/invitations[/{id}]` | one-time enrollment invitations ([`invitations`]) |
//! | GET | `/api/v1/bulk-enrollment/package?upn=` | WCD customizations XML with a fresh package secret ([`bulk`]) |
//! | DELETE | `/api/v1/bulk-enrollment/packages/{id}` | revoke a package secret ([`bulk`]) |
//!
//! Every route needs a bearer token: the bootstrap token or a named admin token; a read-only
//! token may call the GET routes (except [`tokens::ADMIN_ONLY_GETS`]) and gets 403 otherwise.
//! | * | `/api/v1/autopilot/...` | Autopilot profiles, devices, settings ([`autopilot`]) |
//!
//! Errors are `{"error": "..."}` with the HTTP status from [`ApiError::status`], the one map.
//! Handlers call the store only; they never touch protocol code.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::http::routes::{read_body, BodyError, Resp};
use crate::store::{normalize_upn, Device, StoreError, User};

pub mod autopilot;
pub mod backup;
pub mod bulk;
mod detail;
pub mod groups;
pub mod invitations;
mod mail;
pub mod openapi;
mod openapi_access;
pub mod openapi_groups;
mod owner;
pub mod profiles;
pub mod tokens;
pub mod wcd;
pub mod webhook;

/// Largest admin request body.
pub const MAX_ADMIN_BODY: usize = 64 * 1024;
/// Default and maximum page sizes of list endpoints.
pub const DEFAULT_PAGE: usize = 100;
/// Largest page a client may ask for.
pub const MAX_PAGE: usize = 1000;

/// An admin API failure; [`ApiError::status`] and [`ApiError::into_response`] are its only wire map.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// A valid token whose role does not allow this request.
    #[error("{reason}")]
    Forbidden {
        /// Why.
        reason: String,
    },
    /// Unknown route or record.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// The record exists already.
    #[error("{what} already exists")]
    Conflict {
        /// What.
        what: String,
    },
    /// The request conflicts with the record's current state (409, the reason as given).
    #[error("{reason}")]
    ConflictState {
        /// Why.
        reason: String,
    },
    /// The request is malformed.
    #[error("{reason}")]
    BadRequest {
        /// Why.
        reason: String,
    },
    /// One field breaks a rule (400; the JSON names the field).
    #[error("{reason}")]
    Invalid {
        /// The request field.
        field: String,
        /// Why, for the admin.
        reason: String,
    },
    /// The request conflicts with the current state (409, message as is).
    #[error("{reason}")]
    Refused {
        /// Why, for the admin.
        reason: String,
    },
    /// The route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body is too large.
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The store cannot be reached now (503 with `Retry-After`: try again).
    #[error("the store is unavailable; try again later")]
    Unavailable {
        /// Logged, never sent.
        reason: String,
    },
    /// The server failed.
    #[error("internal error")]
    Internal {
        /// Logged, never sent.
        reason: String,
    },
}

impl ApiError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. }
            | ApiError::ConflictState { .. }
            | ApiError::Refused { .. } => StatusCode::CONFLICT,
            ApiError::BadRequest { .. } | ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON response `{"error": "..."}`.
    pub fn into_response(self) -> Resp {
        match &self {
            ApiError::Internal { reason } => tracing::error!(%reason, "admin API internal error"),
            ApiError::Unavailable { reason } => {
                tracing::warn!(%reason, "admin API request failed: store unavailable")
            }
            e => tracing::info!(error = %e, "admin API request refused"),
        }
        let mut body = serde_json::json!({ "error": self.to_string() });
        if let ApiError::Invalid { field, .. } = &self {
            body["field"] = field.as_str().into();
        }
        let mut r = json(self.status(), &body);
        if matches!(self, ApiError::Unauthorized) {
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, ApiError::Unavailable { .. }) {
            r.headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::AlreadyExists { what } => ApiError::Conflict { what: what.into() },
            StoreError::Unavailable { reason } => ApiError::Unavailable { reason },
            e => ApiError::Internal {
                reason: e.to_string(),
            },
        }
    }
}

/// The user `upn`, which must exist (404) and be enabled (409: nothing is made `for_what`, e.g.
/// "an invitation"). Blocking: call inside [`blocking`].
pub(crate) fn enabled_user(app: &App, upn: &str, for_what: &str) -> Result<User, ApiError> {
    let user = app.store.get_user(upn)?.ok_or_else(|| ApiError::NotFound {
        what: format!("user {upn}"),
    })?;
    if user.disabled {
        return Err(ApiError::Conflict {
            what: format!("user {upn} is disabled; {for_what} for it"),
        });
    }
    Ok(user)
}

/// An empty 204 answer.
pub(crate) fn no_content() -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> Resp {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Handles one `/api/v1` request.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Resp {
    match route(app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Every (method, path template) [`route`] serves; `{name}` is one path segment.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/users"),
    ("GET", "/api/v1/users"),
    ("GET", "/api/v1/users/{upn}"),
    ("PATCH", "/api/v1/users/{upn}"),
    ("DELETE", "/api/v1/users/{upn}"),
    ("GET", "/api/v1/devices"),
    ("GET", "/api/v1/devices/{device_id}"),
    ("DELETE", "/api/v1/devices/{device_id}"),
    ("POST", "/api/v1/devices/{device_id}/actions"),
    ("GET", "/api/v1/devices/{device_id}/actions/{action_id}"),
    ("GET", "/api/v1/audit"),
    ("POST", "/api/v1/devices/{device_id}/commands"),
    ("GET", "/api/v1/devices/{device_id}/commands"),
    ("DELETE", "/api/v1/devices/{device_id}/commands"),
    (
        "DELETE",
        "/api/v1/devices/{device_id}/commands/{command_id}",
    ),
    ("POST", "/api/v1/commands"),
    ("PUT", "/api/v1/devices/{device_id}/tenant-lockdown"),
    ("POST", "/api/v1/devices/{device_id}/assign-user"),
    ("PUT", "/api/v1/devices/{device_id}/owner"),
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/api/v1/tokens"),
    ("GET", "/api/v1/tokens"),
    ("DELETE", "/api/v1/tokens/{token_name}"),
    ("POST", "/api/v1/invitations"),
    ("GET", "/api/v1/invitations"),
    ("DELETE", "/api/v1/invitations/{invitation_id}"),
    ("GET", "/api/v1/bulk-enrollment/package"),
    ("DELETE", "/api/v1/bulk-enrollment/packages/{package_id}"),
    ("POST", "/api/v1/groups"),
    ("GET", "/api/v1/groups"),
    ("GET", "/api/v1/groups/{group_id}"),
    ("PATCH", "/api/v1/groups/{group_id}"),
    ("DELETE", "/api/v1/groups/{group_id}"),
    ("GET", "/api/v1/groups/{group_id}/members"),
    ("POST", "/api/v1/groups/{group_id}/members"),
    ("DELETE", "/api/v1/groups/{group_id}/members"),
    ("POST", "/api/v1/profiles"),
    ("GET", "/api/v1/profiles"),
    ("GET", "/api/v1/profiles/{profile_id}"),
    ("PATCH", "/api/v1/profiles/{profile_id}"),
    ("DELETE", "/api/v1/profiles/{profile_id}"),
    ("POST", "/api/v1/profiles/{profile_id}/assignments"),
    (
        "DELETE",
        "/api/v1/profiles/{profile_id}/assignments/{group_id}",
    ),
    ("POST", "/api/v1/profiles/{profile_id}/push"),
    ("GET", "/api/v1/profiles/{profile_id}/status"),
    ("GET", "/api/v1/devices/{device_id}/profiles"),
    ("GET", "/api/v1/jobs"),
    ("GET", "/api/v1/jobs/{job_id}"),
    ("POST", "/api/v1/autopilot/profiles"),
    ("GET", "/api/v1/autopilot/profiles"),
    ("GET", "/api/v1/autopilot/profiles/{profile}"),
    ("PUT", "/api/v1/autopilot/profiles/{profile}"),
    ("DELETE", "/api/v1/autopilot/profiles/{profile}"),
    ("GET", "/api/v1/autopilot/profiles/{profile}/export"),
    ("GET", "/api/v1/autopilot/settings"),
    ("PUT", "/api/v1/autopilot/settings"),
    ("POST", "/api/v1/autopilot/devices"),
    ("GET", "/api/v1/autopilot/devices"),
    ("GET", "/api/v1/autopilot/devices/{serial}"),
    ("PATCH", "/api/v1/autopilot/devices/{serial}"),
    ("DELETE", "/api/v1/autopilot/devices/{serial}"),
    ("POST", "/api/v1/backup"),
    ("GET", "/api/v1/webhook"),
    ("GET", "/api/v1/webhook/dead-letters"),
    ("GET", "/api/v1/webhook/dead-letters/{event_id}"),
    ("DELETE", "/api/v1/webhook/dead-letters/{event_id}"),
    ("POST", "/api/v1/webhook/dead-letters/{event_id}/redeliver"),
];

/// A matched admin route with its path parameters.
#[derive(Debug, PartialEq, Eq)]
enum Endpoint<'a> {
    CreateUser,
    ListUsers,
    GetUser(&'a str),
    PatchUser(&'a str),
    DeleteUser(&'a str),
    ListDevices,
    GetDevice(&'a str),
    DeleteDevice(&'a str),
    CreateAction(&'a str),
    GetAction(&'a str, &'a str),
    ListAudit,
    CreateCommand(&'a str),
    ListCommands(&'a str),
    ClearCommands(&'a str),
    CancelCommand(&'a str, &'a str),
    BulkCommand,
    TenantLockdown(&'a str),
    AssignUser(&'a str),
    TransferDevice(&'a str),
    OpenApi,
    CreateToken,
    ListTokens,
    RevokeToken(&'a str),
    CreateInvitation,
    ListInvitations,
    RevokeInvitation(&'a str),
    BulkPackage,
    RevokeBulkPackage(&'a str),
    Groups(groups::Ep<'a>),
    Profiles(profiles::Ep<'a>),
    DeviceProfiles(&'a str),
    Autopilot(autopilot::Route<'a>),
    Webhook(webhook::Route<'a>),
    ListJobs,
    GetJob(&'a str),
    Backup,
}

/// The decoded path segments after `/api/v1`.
fn segments(path: &str) -> Result<Vec<String>, ApiError> {
    path.trim_end_matches('/')
        .trim_start_matches("/api/v1")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect()
}

/// Matches segments and method to an endpoint (pure: the routing table itself).
fn endpoint<'a>(segs: &[&'a str], method: &Method) -> Result<Endpoint<'a>, ApiError> {
    use Endpoint as E;
    Ok(match (segs, method.clone()) {
        (["users"], Method::POST) => E::CreateUser,
        (["users"], Method::GET) => E::ListUsers,
        (["users", upn], Method::GET) => E::GetUser(upn),
        (["users", upn], Method::PATCH) => E::PatchUser(upn),
        (["users", upn], Method::DELETE) => E::DeleteUser(upn),
        (["devices"], Method::GET) => E::ListDevices,
        (["devices", id], Method::GET) => E::GetDevice(id),
        (["devices", id], Method::DELETE) => E::DeleteDevice(id),
        (["devices", id, "actions"], Method::POST) => E::CreateAction(id),
        (["devices", id, "actions", aid], Method::GET) => E::GetAction(id, aid),
        (["audit"], Method::GET) => E::ListAudit,
        (["devices", id, "commands"], Method::POST) => E::CreateCommand(id),
        (["devices", id, "commands"], Method::GET) => E::ListCommands(id),
        (["devices", id, "commands"], Method::DELETE) => E::ClearCommands(id),
        (["devices", id, "commands", cid], Method::DELETE) => E::CancelCommand(id, cid),
        (["commands"], Method::POST) => E::BulkCommand,
        (["devices", id, "tenant-lockdown"], Method::PUT) => E::TenantLockdown(id),
        (["devices", id, "assign-user"], Method::POST) => E::AssignUser(id),
        (["devices", id, "owner"], Method::PUT) => E::TransferDevice(id),
        (["openapi.json"], Method::GET) => E::OpenApi,
        (["tokens"], Method::POST) => E::CreateToken,
        (["tokens"], Method::GET) => E::ListTokens,
        (["tokens", name], Method::DELETE) => E::RevokeToken(name),
        (["invitations"], Method::POST) => E::CreateInvitation,
        (["invitations"], Method::GET) => E::ListInvitations,
        (["invitations", id], Method::DELETE) => E::RevokeInvitation(id),
        (["bulk-enrollment", "package"], Method::GET) => E::BulkPackage,
        (["bulk-enrollment", "packages", id], Method::DELETE) => E::RevokeBulkPackage(id),
        (["groups", ..], _) => E::Groups(groups::endpoint(segs, method)?),
        (["profiles", ..], _) => E::Profiles(profiles::endpoint(segs, method)?),
        (["devices", id, "profiles"], Method::GET) => E::DeviceProfiles(id),
        (["autopilot", rest @ ..], m) => E::Autopilot(autopilot::endpoint(rest, &m)?),
        (["webhook", rest @ ..], m) => E::Webhook(webhook::endpoint(rest, &m)?),
        (["jobs"], Method::GET) => E::ListJobs,
        (["jobs", id], Method::GET) => E::GetJob(id),
        (["backup"], Method::POST) => E::Backup,
        (
            ["users"]
            | ["users", _]
            | ["devices"]
            | ["devices", _]
            | ["devices", _, "commands"]
            | ["devices", _, "commands", _]
            | ["devices", _, "tenant-lockdown"]
            | ["devices", _, "assign-user"]
            | ["devices", _, "owner"]
            | ["devices", _, "profiles"]
            | ["devices", _, "actions"]
            | ["devices", _, "actions", _]
            | ["audit"]
            | ["commands"]
            | ["openapi.json"]
            | ["tokens"]
            | ["tokens", _]
            | ["invitations"]
            | ["invitations", _]
            | ["bulk-enrollment", "package"]
            | ["bulk-enrollment", "packages", _]
            | ["jobs"]
            | ["jobs", _]
            | ["backup"],
            _,
        ) => return Err(ApiError::MethodNotAllowed),
        _ => {
            return Err(ApiError::NotFound {
                what: "route".into(),
            })
        }
    })
}

async fn route(app: Arc<App>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let actor = tokens::authenticate(&app, &req).await?;
    tracing::Span::current().record("actor", actor.name.as_str());
    let segs = segments(req.uri().path())?;
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let method = req.method().clone();
    let ep = endpoint(&segs, &method)?;
    // The decoded path: `%2D` must not let a read-only token around ADMIN_ONLY_GETS.
    tokens::authorize(&actor, &method, &format!("/api/v1/{}", segs.join("/")))?;
    tokens::ACTOR.scope(actor, dispatch(app, req, ep)).await
}

async fn dispatch(
    app: Arc<App>,
    req: Request<Incoming>,
    ep: Endpoint<'_>,
) -> Result<Resp, ApiError> {
    match ep {
        Endpoint::CreateUser => create_user(app, req).await,
        Endpoint::ListUsers => list_users(app, req.uri().query().unwrap_or("")).await,
        Endpoint::GetUser(upn) => get_user(app, upn.to_string()).await,
        Endpoint::PatchUser(upn) => patch_user(app, upn.to_string(), req).await,
        Endpoint::DeleteUser(upn) => delete_user(app, upn.to_string()).await,
        Endpoint::ListDevices => list_devices(app, req.uri().query().unwrap_or("")).await,
        Endpoint::GetDevice(id) => detail::get_device(app, id.to_string()).await,
        Endpoint::DeleteDevice(id) => delete_device(app, id.to_string()).await,
        Endpoint::CreateAction(id) => create_action(app, id.to_string(), req).await,
        Endpoint::GetAction(id, aid) => get_action(app, id.to_string(), aid.to_string()).await,
        Endpoint::ListAudit => list_audit(app, req.uri().query().unwrap_or("")).await,
        Endpoint::CreateCommand(id) => create_command(app, id.to_string(), req).await,
        Endpoint::ListCommands(id) => list_commands(app, id.to_string()).await,
        Endpoint::ClearCommands(id) => clear_commands(app, id.to_string()).await,
        Endpoint::CancelCommand(id, cid) => {
            cancel_command(app, id.to_string(), cid.to_string()).await
        }
        Endpoint::BulkCommand => bulk_command(app, req).await,
        Endpoint::TenantLockdown(id) => tenant_lockdown(app, id.to_string(), req).await,
        Endpoint::AssignUser(id) => assign_user(app, id.to_string(), req).await,
        Endpoint::TransferDevice(id) => owner::transfer(app, id.to_string(), req).await,
        Endpoint::OpenApi => Ok(json(StatusCode::OK, &openapi::document())),
        Endpoint::CreateToken => tokens::create(app, req).await,
        Endpoint::ListTokens => tokens::list(app, req.uri().query().unwrap_or("")).await,
        Endpoint::RevokeToken(name) => tokens::revoke(app, name.to_string()).await,
        Endpoint::CreateInvitation => invitations::create(app, req).await,
        Endpoint::ListInvitations => invitations::list(app, req.uri().query().unwrap_or("")).await,
        Endpoint::RevokeInvitation(id) => invitations::revoke(app, id.to_string()).await,
        Endpoint::BulkPackage => bulk::package(app, req.uri().query().unwrap_or("")).await,
        Endpoint::RevokeBulkPackage(id) => bulk::revoke(app, id.to_string()).await,
        Endpoint::Groups(ep) => groups::handle(app, ep, req).await,
        Endpoint::Profiles(ep) => profiles::handle(app, ep, req).await,
        Endpoint::DeviceProfiles(id) => profiles::device_profiles(app, id.to_string()).await,
        Endpoint::Autopilot(r) => autopilot::handle(app, r, req).await,
        Endpoint::Webhook(r) => webhook::handle(app, r, req.uri().query().unwrap_or("")).await,
        Endpoint::ListJobs => list_jobs(app, req.uri().query().unwrap_or("")).await,
        Endpoint::GetJob(id) => get_job(app, id.to_string()).await,
        Endpoint::Backup => backup::create(app, req).await,
    }
}

/// `GET /api/v1/jobs?limit=&cursor=`: background jobs, in id order.
async fn list_jobs(app: Arc<App>, query: &str) -> Result<Resp, ApiError> {
    let (limit, cursor) = page_query(query)?;
    let (jobs, next) = blocking(move || {
        let mut jobs = crate::jobs::list(&app, cursor.as_deref(), limit + 1)?;
        let next = if jobs.len() > limit {
            jobs.truncate(limit);
            jobs.last().map(|j| j.id.clone())
        } else {
            None
        };
        Ok((jobs, next))
    })
    .await?;
    let jobs: Vec<serde_json::Value> = jobs.iter().map(crate::jobs::view).collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"jobs": jobs, "next": next}),
    ))
}

/// `GET /api/v1/jobs/{id}`: a job's state and progress.
async fn get_job(app: Arc<App>, id: String) -> Result<Resp, ApiError> {
    let job = blocking(move || Ok(crate::jobs::get(&app, &id)?)).await?;
    match job {
        Some(j) => Ok(json(StatusCode::OK, &crate::jobs::view(&j))),
        None => Err(ApiError::NotFound { what: "job".into() }),
    }
}

/// Runs store work off the async workers (inside the request's span, so its log lines name
/// the actor and trace id).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| ApiError::Internal {
            reason: e.to_string(),
        })?
}

async fn json_body<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T, ApiError> {
    json_body_limited(req, MAX_ADMIN_BODY).await
}

async fn json_body_limited<T: for<'de> Deserialize<'de>>(
    req: Request<Incoming>,
    limit: usize,
) -> Result<T, ApiError> {
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/json") {
        return Err(ApiError::BadRequest {
            reason: format!("Content-Type must be application/json, got {ct:?}"),
        });
    }
    let timeout = crate::http::routes::BodyTimeout::of(&req);
    let body = read_body(req.into_body(), limit, timeout)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge(limit) => ApiError::TooLarge { limit },
            BodyError::Timeout => ApiError::BadRequest {
                reason: "body not received in time".into(),
            },
            BodyError::Broken(r) => ApiError::BadRequest { reason: r },
        })?;
    serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
        reason: format!("invalid JSON: {e}"),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    upn: String,
    password: String,
}

/// A user as the API shows it (never the hash).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserView {
    /// UPN (lower-case).
    pub upn: String,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// Whether enrollment is refused.
    pub disabled: bool,
}

impl From<&User> for UserView {
    fn from(u: &User) -> UserView {
        UserView {
            upn: u.upn.clone(),
            created_at: u.created_at,
            disabled: u.disabled,
        }
    }
}

fn validate_upn(upn: &str) -> Result<String, ApiError> {
    crate::upn::parse(upn).map_err(|e| {
        tracing::warn!(upn = %crate::soap::envelope::clip(upn), error = %e, "admin request refused: bad UPN");
        ApiError::BadRequest {
            reason: format!("upn: {}", e.0),
        }
    })
}

async fn create_user(app: Arc<App>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let nu: NewUser = json_body(req).await?;
    let upn = validate_upn(&nu.upn)?;
    if nu.password.is_empty() || nu.password.len() > 1024 {
        return Err(ApiError::BadRequest {
            reason: "password must be 1-1024 bytes".into(),
        });
    }
    let a = app.clone();
    let user = blocking(move || {
        let app = a;
        if app.store.get_user(&upn)?.is_some() {
            return Err(ApiError::Conflict {
                what: format!("user {upn}"),
            });
        }
        let hash = crate::auth::hash_password(&nu.password).map_err(|e| ApiError::Internal {
            reason: format!("argon2: {e}"),
        })?;
        let user = User {
            upn,
            id: crate::owner::new_user_id(),
            password_hash: hash,
            created_at: app.clock.now_unix(),
            disabled: false,
        };
        app.store.create_user(&user).map_err(|e| match e {
            StoreError::AlreadyExists { .. } => ApiError::Conflict {
                what: format!("user {}", user.upn),
            },
            e => e.into(),
        })?;
        tracing::info!(upn = %user.upn, "user created");
        Ok(user)
    })
    .await?;
    audit(&app, "user.create", &user.upn, serde_json::json!({})).await;
    Ok(json(StatusCode::CREATED, &UserView::from(&user)))
}

async fn list_users(app: Arc<App>, query: &str) -> Result<Resp, ApiError> {
    let (limit, cursor) = page_query(query)?;
    let users = blocking(move || Ok(app.store.list_users()?)).await?;
    let mut views: Vec<UserView> = users
        .iter()
        .filter(|u| cursor.as_deref().is_none_or(|c| u.upn.as_str() > c))
        .take(limit + 1)
        .map(UserView::from)
        .collect();
    let next = if views.len() > limit {
        views.truncate(limit);
        views.last().map(|u| u.upn.clone())
    } else {
        None
    };
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "users": views, "next": next }),
    ))
}

async fn get_user(app: Arc<App>, upn: String) -> Result<Resp, ApiError> {
    let upn = normalize_upn(&upn);
    let out = blocking(move || {
        let Some(user) = app.store.get_user(&upn)? else {
            return Err(ApiError::NotFound {
                what: format!("user {upn}"),
            });
        };
        // Every device record this account owns (a scan: fine at this scale). Devices of a
        // deleted account with the same UPN are not this account's.
        let mut devices = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = app.store.list_devices(after.as_deref(), MAX_PAGE)?;
            let Some(last) = page.last() else { break };
            after = Some(last.device_id.clone());
            devices.extend(
                page.into_iter()
                    .filter(|d| crate::owner::owned_by(d, &user))
                    .map(|d| d.device_id),
            );
        }
        let mut v = serde_json::to_value(UserView::from(&user)).unwrap_or_default();
        v["devices"] = serde_json::json!(devices);
        v["bulk_packages"] = serde_json::json!(bulk::packages_of(app.store.as_ref(), &upn)?);
        v["password_failures"] = serde_json::json!(crate::lockout::failures(&app, &upn)?);
        Ok(v)
    })
    .await?;
    Ok(json(StatusCode::OK, &out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchUser {
    password: Option<String>,
    disabled: Option<bool>,
}

async fn patch_user(app: Arc<App>, upn: String, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let upn = normalize_upn(&upn);
    let p: PatchUser = json_body(req).await?;
    if p.password.is_none() && p.disabled.is_none() {
        return Err(ApiError::BadRequest {
            reason: "give password and/or disabled".into(),
        });
    }
    if let Some(pw) = &p.password {
        if pw.is_empty() || pw.len() > 1024 {
            return Err(ApiError::BadRequest {
                reason: "password must be 1-1024 bytes".into(),
            });
        }
    }
    let detail = serde_json::json!({
        "password_changed": p.password.is_some(),
        "disabled": p.disabled,
    });
    let a = app.clone();
    let user = blocking(move || {
        let not_found = || ApiError::NotFound {
            what: format!("user {upn}"),
        };
        let mut user = a.store.get_user(&upn)?.ok_or_else(not_found)?;
        if let Some(pw) = &p.password {
            user.password_hash =
                crate::auth::hash_password(pw).map_err(|e| ApiError::Internal {
                    reason: format!("argon2: {e}"),
                })?;
        }
        if let Some(d) = p.disabled {
            user.disabled = d;
        }
        if !a.store.update_user(&user)? {
            return Err(not_found());
        }
        // A new password, or re-enabling the user, ends a lock from wrong passwords.
        if p.password.is_some() || p.disabled == Some(false) {
            crate::lockout::clear(&a, &upn)?;
        }
        tracing::info!(upn = %user.upn, "user updated");
        Ok(user)
    })
    .await?;
    audit(&app, "user.update", &user.upn, detail).await;
    Ok(json(StatusCode::OK, &UserView::from(&user)))
}

/// Appends one entry to the audit log after a successful change (a failure to do so is logged,
/// the change stands).
async fn audit(app: &Arc<App>, action: &str, target: &str, detail: serde_json::Value) {
    let entry = crate::store::AuditEntry {
        id: 0,
        at: app.clock.now_unix(),
        actor: tokens::current_actor(),
        action: action.into(),
        target: target.into(),
        detail,
    };
    let a = app.clone();
    let r = blocking(move || Ok(a.store.append_audit(entry)?)).await;
    if let Err(e) = r {
        tracing::error!(error = %e, action, target, "audit entry not written");
    }
}

/// One page of the audit log.
#[derive(Debug, Serialize, Deserialize)]
pub struct AuditPage {
    /// Entries, oldest first.
    pub entries: Vec<crate::store::AuditEntry>,
    /// Cursor of the next page, `null` at the end.
    pub next: Option<String>,
}

async fn list_audit(app: Arc<App>, query: &str) -> Result<Resp, ApiError> {
    let (limit, cursor) = page_query(query)?;
    let after = cursor
        .map(|c| {
            c.parse::<u64>().map_err(|_| ApiError::BadRequest {
                reason: "cursor must be the next of a previous page".into(),
            })
        })
        .transpose()?;
    let page = blocking(move || {
        let mut entries = app.store.list_audit(after, limit + 1)?;
        let next = if entries.len() > limit {
            entries.truncate(limit);
            entries.last().map(|e| e.id.to_string())
        } else {
            None
        };
        Ok(AuditPage { entries, next })
    })
    .await?;
    Ok(json(StatusCode::OK, &page))
}

async fn delete_device(app: Arc<App>, id: String) -> Result<Resp, ApiError> {
    let a = app.clone();
    let serial = blocking({
        let id = id.clone();
        move || {
            let dev = a.store.get_device(&id)?;
            if !a.store.delete_device(&id, a.clock.now_unix())? {
                return Err(ApiError::NotFound {
                    what: format!("device {id}"),
                });
            }
            let _ = crate::groups::on_device_changed(&a, &id);
            Ok(dev.map(|d| d.cert_serial))
        }
    })
    .await?;
    tracing::info!(device_id = %id, "device deleted");
    audit(
        &app,
        "device.delete",
        &id,
        serde_json::json!({ "cert_serial": serial }),
    )
    .await;
    Ok(no_content())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAction {
    action: String,
}

async fn create_action(
    app: Arc<App>,
    id: String,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    use crate::mdm::actions::{self, Action};
    let na: NewAction = json_body(req).await?;
    let action = Action::parse(&na.action).ok_or_else(|| ApiError::BadRequest {
        reason: format!(
            "action must be one of wipe, wipe-protected, reboot, retire, sync; got {:?}",
            na.action
        ),
    })?;
    let a = app.clone();
    let out = blocking({
        let id = id.clone();
        move || Ok(actions::request(&a, &id, action)?)
    })
    .await?;
    let (action_id, existing) = match out {
        crate::store::Enqueued::Created(c) => (c.command_id, false),
        crate::store::Enqueued::Existing(c) => (c.command_id, true),
    };
    if !existing {
        tracing::info!(device_id = %id, %action_id, action = action.name(), "device action requested");
        audit(
            &app,
            "device.action",
            &id,
            serde_json::json!({ "action": action.name(), "action_id": action_id }),
        )
        .await;
    }
    let mut body = serde_json::json!({ "action_id": action_id, "action": action.name() });
    if existing {
        body["existing"] = true.into();
    }
    Ok(json(StatusCode::ACCEPTED, &body))
}

async fn get_action(app: Arc<App>, id: String, aid: String) -> Result<Resp, ApiError> {
    let cmd = blocking({
        let (id, aid) = (id.clone(), aid.clone());
        move || {
            if app.store.get_device(&id)?.is_none() && app.store.list_commands(&id)?.is_empty() {
                return Err(ApiError::NotFound {
                    what: format!("device {id}"),
                });
            }
            Ok(app.store.get_command(&id, &aid)?)
        }
    })
    .await?;
    match cmd.as_ref().and_then(crate::mdm::actions::ActionView::of) {
        Some(v) => Ok(json(StatusCode::OK, &v)),
        None => Err(ApiError::NotFound {
            what: format!("action {aid}"),
        }),
    }
}

/// Parses `limit` and `cursor` of a paginated list.
fn page_query(query: &str) -> Result<(usize, Option<String>), ApiError> {
    page_query_with(query, |_, _| Ok(false))
}

/// Parses `limit` and `cursor`, handing every other parameter to `extra`, which says whether it
/// knew it; unknown parameters are a 400.
fn page_query_with(
    query: &str,
    mut extra: impl FnMut(&str, String) -> Result<bool, ApiError>,
) -> Result<(usize, Option<String>), ApiError> {
    let mut limit = DEFAULT_PAGE;
    let mut cursor: Option<String> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v)?;
        match k {
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| ApiError::BadRequest {
                        reason: format!("limit must be an integer in 1..={MAX_PAGE}"),
                    })?;
            }
            "cursor" => cursor = Some(v).filter(|c| !c.is_empty()),
            other => {
                if !extra(other, v)? {
                    return Err(ApiError::BadRequest {
                        reason: format!("unknown query parameter {other:?}"),
                    });
                }
            }
        }
    }
    Ok((limit, cursor))
}

async fn delete_user(app: Arc<App>, upn: String) -> Result<Resp, ApiError> {
    let upn = normalize_upn(&upn);
    let existed = blocking({
        let (upn, app) = (upn.clone(), app.clone());
        move || {
            let existed = app.store.delete_user(&upn)?;
            // A later user of the same UPN must not inherit the old account's package secrets.
            bulk::forget_user(app.store.as_ref(), &upn)?;
            crate::lockout::clear(&app, &upn)?;
            Ok(existed)
        }
    })
    .await?;
    if !existed {
        return Err(ApiError::NotFound {
            what: format!("user {upn}"),
        });
    }
    tracing::info!(%upn, "user deleted");
    audit(&app, "user.delete", &upn, serde_json::json!({})).await;
    Ok(no_content())
}

/// A device as the lists show it: the record and whether its owner still exists.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeviceView {
    /// The record.
    #[serde(flatten)]
    pub device: Device,
    /// `active`, `disabled`, `orphaned` (owner deleted) or `device_only` ([`crate::owner`]).
    pub owner_status: crate::owner::OwnerStatus,
}

/// One page of devices.
#[derive(Debug, Serialize, Deserialize)]
pub struct DevicePage {
    /// The devices, ordered by DeviceID.
    pub devices: Vec<DeviceView>,
    /// Cursor for the next page, `null` at the end.
    pub next: Option<String>,
}

/// Device records examined per list request at most: a sparse filter returns a short page and a
/// `next` cursor instead of scanning the whole fleet in one request.
pub const SCAN_BUDGET: usize = 20_000;

async fn list_devices(app: Arc<App>, query: &str) -> Result<Resp, ApiError> {
    let mut f = crate::store::DeviceFilter::default();
    let mut owner_status = None;
    let bad = |what: &str| ApiError::BadRequest {
        reason: format!("{what} must be a Unix time in seconds"),
    };
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
                        return Err(ApiError::BadRequest {
                            reason:
                                "owner_status must be active, disabled, orphaned or device_only"
                                    .into(),
                        })
                    }
                })
            }
            "state" => {
                f.state = Some(match v.as_str() {
                    "enrolled" => crate::store::DeviceState::Enrolled,
                    "unenrolled" => crate::store::DeviceState::Unenrolled,
                    _ => {
                        return Err(ApiError::BadRequest {
                            reason: "state must be enrolled or unenrolled".into(),
                        })
                    }
                })
            }
            "device_type" => f.device_type = Some(v),
            "enrollment_type" => f.enrollment_type = Some(v),
            "os_edition" => f.os_edition = Some(v),
            "last_seen_before" => f.last_seen_before = Some(v.parse().map_err(|_| bad(k))?),
            "last_seen_after" => f.last_seen_after = Some(v.parse().map_err(|_| bad(k))?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let page = blocking(move || {
        let (devices, next) = crate::store::filtered_devices(
            app.store.as_ref(),
            cursor.as_deref(),
            limit,
            &f,
            SCAN_BUDGET,
        )?;
        // `user=` names the account of that UPN now: devices a deleted account of the same UPN
        // left behind are not attributed to it (they show as orphaned).
        let account = match &f.upn {
            Some(upn) => app.store.get_user(upn)?,
            None => None,
        };
        let mut views = Vec::with_capacity(devices.len());
        for device in devices {
            let status = crate::owner::status(app.store.as_ref(), &device)?;
            if account
                .as_ref()
                .is_some_and(|u| !crate::owner::owned_by(&device, u))
            {
                continue;
            }
            if owner_status.is_some_and(|s| s != status) {
                continue;
            }
            views.push(DeviceView {
                device,
                owner_status: status,
            });
        }
        Ok(DevicePage {
            devices: views,
            next,
        })
    })
    .await?;
    Ok(json(StatusCode::OK, &page))
}

/// Decodes `%XX` escapes (and nothing else) in a path segment or query value.
fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bad = || ApiError::BadRequest {
        reason: "invalid percent-encoding".into(),
    };
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b.com").unwrap(), "a@b.com");
        assert!(percent_decode("%4").is_err());
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%ff").is_err());
    }

    #[test]
    fn upn_validation() {
        assert_eq!(
            validate_upn(" Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
        assert!(validate_upn("").is_err());
        assert!(validate_upn("a b").is_err());
        assert!(validate_upn("a/b").is_err());
    }

    /// Whether `segs` (under `/api/v1`) fits `template`; `{name}` matches any one segment.
    fn fits(template: &str, segs: &[&str]) -> bool {
        let t: Vec<&str> = template
            .trim_start_matches("/api/v1")
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        t.len() == segs.len()
            && t.iter()
                .zip(segs)
                .all(|(t, s)| (t.starts_with('{') && t.ends_with('}')) || t == s)
    }

    #[test]
    fn routes_list_every_served_route() {
        // Each listed route is served, with its parameters bound.
        for (m, template) in ROUTES {
            let path = template
                .replace("{upn}", "alice%40example.com")
                .replace("{device_id}", "dev-1")
                .replace("{command_id}", "cmd-1")
                .replace("{action_id}", "act-1");
            let segs = segments(&path).unwrap();
            let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
            let method = Method::from_bytes(m.as_bytes()).unwrap();
            let e = endpoint(&segs, &method).unwrap_or_else(|e| panic!("{m} {template}: {e}"));
            if template.contains("{upn}") {
                let upn = "alice@example.com";
                assert!(
                    [
                        Endpoint::GetUser(upn),
                        Endpoint::PatchUser(upn),
                        Endpoint::DeleteUser(upn)
                    ]
                    .contains(&e),
                    "{e:?}"
                );
            }
            if template.contains("{action_id}") {
                assert_eq!(e, Endpoint::GetAction("dev-1", "act-1"));
            }
            if template.contains("{command_id}") {
                assert_eq!(e, Endpoint::CancelCommand("dev-1", "cmd-1"));
            }
        }
        // Every path of up to 4 segments over the route vocabulary, with every method: served iff
        // ROUTES lists it; a path no route fits is 404, one with only other methods is 405.
        let words = [
            "users",
            "devices",
            "commands",
            "tenant-lockdown",
            "actions",
            "audit",
            "openapi.json",
            "tokens",
            "invitations",
            "bulk-enrollment",
            "package",
            "packages",
            "x",
        ];
        let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"];
        let mut paths: Vec<Vec<&str>> = vec![vec![]];
        let mut frontier: Vec<Vec<&str>> = vec![vec![]];
        for _ in 0..4 {
            let mut next = Vec::new();
            for p in &frontier {
                for w in words {
                    let mut q = p.clone();
                    q.push(w);
                    next.push(q);
                }
            }
            paths.extend(next.iter().cloned());
            frontier = next;
        }
        let mut served = 0;
        for segs in &paths {
            let any = ROUTES.iter().any(|(_, t)| fits(t, segs));
            for m in methods {
                let listed = ROUTES.iter().any(|(rm, t)| *rm == m && fits(t, segs));
                let got = endpoint(segs, &Method::from_bytes(m.as_bytes()).unwrap());
                match got {
                    Ok(_) => {
                        assert!(
                            listed,
                            "{m} /{} is served but not in ROUTES",
                            segs.join("/")
                        );
                        served += 1;
                    }
                    Err(ApiError::MethodNotAllowed) => {
                        assert!(any && !listed, "{m} /{}: 405", segs.join("/"))
                    }
                    Err(ApiError::NotFound { .. }) => {
                        assert!(!any, "{m} /{}: 404 but in ROUTES", segs.join("/"))
                    }
                    Err(e) => panic!("{m} /{}: {e}", segs.join("/")),
                }
            }
        }
        assert!(served >= ROUTES.len());
    }
}

impl From<crate::mdm::commands::CommandError> for ApiError {
    fn from(e: crate::mdm::commands::CommandError) -> ApiError {
        use crate::mdm::commands::CommandError as C;
        match e {
            C::Invalid { reason } => ApiError::BadRequest { reason },
            C::UnknownDevice { device_id } => ApiError::NotFound {
                what: format!("device {device_id}"),
            },
            C::NotEnrolled { device_id } => ApiError::Conflict {
                what: format!("device {device_id} is not enrolled; a command"),
            },
            C::Store(e) => e.into(),
        }
    }
}

/// A queued command as the API shows it.
#[derive(Debug, Serialize)]
struct CommandView<'a> {
    command_id: &'a str,
    verb: &'a str,
    target: Option<&'a str>,
    state: crate::store::CommandState,
    status: Option<u16>,
    inner: &'a [crate::store::InnerStatus],
    error: Option<&'a str>,
    results: &'a [crate::store::ResultItem],
    results_truncated: bool,
    created_at: i64,
    sent_at: Option<i64>,
    completed_at: Option<i64>,
    send_count: u32,
}

impl<'a> From<&'a crate::store::CommandRecord> for CommandView<'a> {
    fn from(c: &'a crate::store::CommandRecord) -> Self {
        CommandView {
            command_id: &c.command_id,
            verb: &c.verb,
            target: c.target.as_deref(),
            state: c.state,
            status: c.status,
            inner: &c.inner,
            error: c.error.as_deref(),
            results: &c.results,
            results_truncated: c.results_truncated,
            created_at: c.created_at,
            sent_at: c.sent_at,
            completed_at: c.completed_at,
            send_count: c.send_count,
        }
    }
}

/// Audits a newly queued command (a repeated id changed nothing and is not logged).
async fn audit_enqueued(app: &Arc<App>, action: &str, id: &str, e: &crate::store::Enqueued) {
    if let crate::store::Enqueued::Created(c) = e {
        let detail =
            serde_json::json!({ "command_id": c.command_id, "verb": c.verb, "target": c.target });
        audit(app, action, id, detail).await;
    }
}

fn enqueued_response(e: crate::store::Enqueued) -> Resp {
    match e {
        crate::store::Enqueued::Created(c) => json(
            StatusCode::CREATED,
            &serde_json::json!({ "command_id": c.command_id }),
        ),
        crate::store::Enqueued::Existing(c) => json(
            StatusCode::OK,
            &serde_json::json!({ "command_id": c.command_id, "existing": true }),
        ),
    }
}

async fn create_command(
    app: Arc<App>,
    id: String,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let nc: crate::mdm::commands::NewCommand = json_body(req).await?;
    let out = blocking({
        let (app, id) = (app.clone(), id.clone());
        move || Ok(crate::mdm::commands::enqueue(&app, &id, nc)?)
    })
    .await?;
    audit_enqueued(&app, "command.enqueue", &id, &out).await;
    Ok(enqueued_response(out))
}

async fn list_commands(app: Arc<App>, id: String) -> Result<Resp, ApiError> {
    let cmds = blocking(move || {
        if app.store.get_device(&id)?.is_none() {
            return Err(ApiError::NotFound {
                what: format!("device {id}"),
            });
        }
        Ok(app.store.list_commands(&id)?)
    })
    .await?;
    let views: Vec<CommandView> = cmds.iter().map(CommandView::from).collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "commands": views }),
    ))
}

async fn cancel_command(app: Arc<App>, id: String, cid: String) -> Result<Resp, ApiError> {
    use crate::store::Cancelled;
    let out = blocking({
        let (id, cid, app) = (id.clone(), cid.clone(), app.clone());
        move || Ok(app.store.cancel(&id, &cid, app.clock.now_unix())?)
    })
    .await?;
    match out {
        Cancelled::Cancelled => {
            tracing::info!(device_id = %id, command_id = %cid, "command cancelled");
            audit(
                &app,
                "command.cancel",
                &id,
                serde_json::json!({ "command_id": cid }),
            )
            .await;
            Ok(no_content())
        }
        Cancelled::NotFound => Err(ApiError::NotFound {
            what: format!("command {cid}"),
        }),
        Cancelled::AlreadyFinal(state) => Err(ApiError::Conflict {
            what: format!("command {cid} is already {state:?}; a final state"),
        }),
    }
}

async fn clear_commands(app: Arc<App>, id: String) -> Result<Resp, ApiError> {
    let (a, i) = (app.clone(), id.clone());
    let n = blocking(move || {
        let (app, id) = (a, i);
        if app.store.get_device(&id)?.is_none() {
            return Err(ApiError::NotFound {
                what: format!("device {id}"),
            });
        }
        let n = app.store.clear(&id, app.clock.now_unix())?;
        tracing::info!(device_id = %id, cancelled = n, "command queue cleared");
        Ok(n)
    })
    .await?;
    audit(
        &app,
        "command.clear",
        &id,
        serde_json::json!({ "cancelled": n }),
    )
    .await;
    Ok(json(StatusCode::OK, &serde_json::json!({ "cancelled": n })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantLockdown {
    require_network_in_oobe: bool,
}

async fn tenant_lockdown(
    app: Arc<App>,
    id: String,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let tl: TenantLockdown = json_body(req).await?;
    let on = tl.require_network_in_oobe;
    let out = blocking({
        let (app, id) = (app.clone(), id.clone());
        move || Ok(crate::mdm::commands::set_tenant_lockdown(&app, &id, on)?)
    })
    .await?;
    let command_id = match &out {
        crate::store::Enqueued::Created(c) | crate::store::Enqueued::Existing(c) => {
            c.command_id.clone()
        }
    };
    audit(
        &app,
        "device.tenant_lockdown",
        &id,
        serde_json::json!({ "require_network_in_oobe": on, "command_id": command_id }),
    )
    .await;
    Ok(enqueued_response(out))
}

/// Largest `device_ids` list of one bulk request.
pub const MAX_BULK_DEVICES: usize = 100_000;

async fn bulk_command(app: Arc<App>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let mut v: serde_json::Map<String, serde_json::Value> =
        json_body_limited(req, 8 * 1024 * 1024).await?;
    let bad = |e: serde_json::Error| ApiError::BadRequest {
        reason: format!("invalid JSON: {e}"),
    };
    let device_ids: Vec<String> =
        serde_json::from_value(v.remove("device_ids").ok_or_else(|| ApiError::BadRequest {
            reason: "device_ids is required".into(),
        })?)
        .map_err(bad)?;
    let command: crate::mdm::commands::NewCommand =
        serde_json::from_value(serde_json::Value::Object(v)).map_err(bad)?;
    if device_ids.is_empty() || device_ids.len() > MAX_BULK_DEVICES {
        return Err(ApiError::BadRequest {
            reason: format!("device_ids must hold 1..={MAX_BULK_DEVICES} ids"),
        });
    }
    let out = blocking({
        let app = app.clone();
        move || {
            Ok(crate::mdm::commands::enqueue_many(
                &app,
                &device_ids,
                command,
            )?)
        }
    })
    .await?;
    let queued = out
        .iter()
        .filter(|(_, o)| {
            matches!(
                o,
                crate::mdm::commands::BulkOutcome::Queued {
                    existing: false,
                    ..
                }
            )
        })
        .count();
    audit(
        &app,
        "command.bulk",
        "*",
        serde_json::json!({ "devices": out.len(), "queued": queued }),
    )
    .await;
    let results: serde_json::Map<String, serde_json::Value> = out
        .into_iter()
        .map(|(id, o)| (id, serde_json::to_value(o).unwrap_or_default()))
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "results": results }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignUser {
    upn: String,
}

/// Assigns a bulk-enrolled device to a real user (409 for any other device).
async fn assign_user(app: Arc<App>, id: String, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let body: AssignUser = json_body(req).await?;
    let upn = validate_upn(&body.upn)?;
    let by = tokens::current_actor();
    let dev = blocking({
        let (app, id) = (app.clone(), id.clone());
        move || {
            let mut dev = app.store.get_device(&id)?.ok_or_else(|| ApiError::NotFound {
                what: format!("device {id}"),
            })?;
            if !dev.bulk {
                return Err(ApiError::Conflict {
                    what: format!("device {id} was not bulk-enrolled, so it cannot be assigned; an assignment"),
                });
            }
            let Some(user) = app.store.get_user(&upn)? else {
                return Err(ApiError::NotFound {
                    what: format!("user {upn}"),
                });
            };
            // A bulk device is assigned to its real user; a generic provisioning account is
            // nobody's real user (the seed's "Assign to User" semantics).
            if crate::store::is_bulk_account(&user.upn) {
                tracing::warn!(device_id = %id, %upn, "assignment of a bulk device to a bulk-enrollment account refused");
                return Err(ApiError::Invalid {
                    field: "upn".into(),
                    reason: format!(
                        "{upn} is a bulk-enrollment account, not a real user; assign the device to the person who uses it"
                    ),
                });
            }
            dev.assigned_user = Some(crate::store::Assignment {
                upn,
                user_id: user.id,
                by,
                at: app.clock.now_unix(),
            });
            app.store.put_device(&dev)?;
            let _ = crate::groups::on_device_changed(&app, &id);
            Ok(dev)
        }
    })
    .await?;
    tracing::info!(device_id = %id, assigned = ?dev.assigned_user, "bulk device assigned to a user");
    audit(
        &app,
        "device.assign_user",
        &id,
        serde_json::json!({ "upn": dev.assigned_user.as_ref().map(|a| &a.upn) }),
    )
    .await;
    Ok(json(StatusCode::OK, &dev))
}
