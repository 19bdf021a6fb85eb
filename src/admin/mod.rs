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
//! | PUT | `/api/v1/devices/{id}/owner` `{"upn"}` | 200 device: handed to that user (audited `device.transfer`); 404 unknown device or user; 409 disabled user ([`crate::owner`]) |
//! | POST | `/api/v1/devices/{id}/actions` `{"action"}` | 202 `{"action_id"}` (+ `"existing"`); 400; 404; 409 |
//! | GET | `/api/v1/devices/{id}/actions/{action_id}` | 200 action state; 404 |
//! | GET | `/api/v1/audit?limit=&cursor=` | 200 `{"entries": [...], "next"}` |
//! | GET | `/api/v1/enrollments/refused` | 200 `{"count", "by_kind", "refusals": [{"seq","at","endpoint","kind","detail"}], "window_secs"}`: enrollment requests refused in the last day ([`crate::mdm::refusals`]) |
//! | POST | `/api/v1/devices/{id}/commands` | 201 `{"command_id"}` (200 if that id exists); 400; 404 |
//! | GET | `/api/v1/devices/{id}/commands` | 200 `{"commands": [...]}` (answered ones for `--command-retention`) |
//! | DELETE | `/api/v1/devices/{id}/commands/{command_id}` | 204; 404; 409 already answered |
//! | DELETE | `/api/v1/devices/{id}/commands` | 200 `{"cancelled": n}` |
//! | POST | `/api/v1/commands` `{"device_ids": [...], <command>}` | 200 `{"results": {id: {"command_id","existing"} \| {"error"}}}` |
//! | PUT | `/api/v1/devices/{id}/tenant-lockdown` `{"require_network_in_oobe": bool}` | 201 `{"command_id"}` |
//! | … | `/api/v1/groups…`, `/api/v1/profiles…`, `GET /api/v1/devices/{id}/profiles` | device groups and profiles: tables in [`groups`] and [`profiles`] |
//! | … | `/api/v1/apps…`, `/api/v1/esp…`, `GET /api/v1/devices/{id}/apps`, `GET /api/v1/devices/{id}/esp` | the app catalog, assignments, install state and the Enrollment Status Page: table in [`apps`] |
//! | GET | `/api/v1/openapi.json` | 200 the OpenAPI 3.0 document of this API ([`openapi`]) |
//! | POST, GET, DELETE | `/api/v1/tokens[/{name}]` | named tokens with a role ([`tokens`]) |
//! | POST, GET, DELETE | `/api/v1/invitations[/{id}]` | one-time enrollment invitations ([`invitations`]) |
//! | GET | `/api/v1/bulk-enrollment/package?upn=` | WCD customizations XML with a fresh package secret ([`bulk`]) |
//! | DELETE | `/api/v1/bulk-enrollment/packages/{id}` | revoke a package secret ([`bulk`]) |
//!
//! Every route needs a bearer token: the bootstrap token or a named admin token; a read-only
//! token may call the GET routes (except [`tokens::ADMIN_ONLY_GETS`]) and gets 403 otherwise.
//! | * | `/api/v1/autopilot/...` | Autopilot profiles, devices, settings ([`autopilot`]) |
//! | * | `/api/v1/tenant/...` | the Microsoft tenant: connection, sync, Entra groups ([`tenant`]) |
//!
//! This module is a thin adapter over the HTTP-free service layer ([`crate::service`]): a handler
//! decodes the path, query and JSON body into typed inputs, calls one service function with the
//! acting token ([`crate::service::Actor`]) and encodes the typed output. The rules, the role
//! checks and the audit log live in the service, so the web console ([`crate::ui`]) shares them.
//! Errors are `{"error": "..."}` with the HTTP status from [`ApiError::status`], the one map.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::http::body::{read_body, BodyError, BodyTimeout, Resp};
use crate::service::{Actor, ServiceError};

pub mod apps;
pub mod autopilot;
pub mod backup;
pub mod bulk;
mod devices;
pub mod groups;
pub mod invitations;
pub mod openapi;
mod openapi_access;
mod openapi_apps;
pub mod openapi_groups;
pub mod profiles;
pub mod tenant;
pub mod tokens;
pub mod traces;
mod users;
pub mod webhook;

pub use crate::service::devices::{DevicePage, DeviceView, MAX_BULK_DEVICES, SCAN_BUDGET};
pub use crate::service::users::{AuditPage, UserView};
pub use crate::service::{DEFAULT_PAGE, MAX_PAGE};

/// Largest admin request body.
pub const MAX_ADMIN_BODY: usize = 64 * 1024;

/// An admin API failure: a service error, or one of the request's HTTP shape.
/// [`ApiError::status`] and [`ApiError::into_response`] are the only wire map.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The service refused or failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body is too large.
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        ApiError::Service(e.into())
    }
}

/// A 400 with this reason.
fn bad(reason: impl Into<String>) -> ApiError {
    ApiError::Service(ServiceError::bad(reason))
}

/// A 404 for `what`.
fn not_found(what: impl Into<String>) -> ApiError {
    ApiError::Service(ServiceError::not_found(what))
}

impl ApiError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        use ServiceError as S;
        match self {
            ApiError::Service(e) => match e {
                S::Unauthorized => StatusCode::UNAUTHORIZED,
                S::Forbidden { .. } => StatusCode::FORBIDDEN,
                S::NotFound { .. } => StatusCode::NOT_FOUND,
                S::Conflict { .. } | S::ConflictState { .. } | S::Refused { .. } => {
                    StatusCode::CONFLICT
                }
                S::BadRequest { .. } | S::Invalid { .. } => StatusCode::BAD_REQUEST,
                S::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                S::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The JSON response `{"error": "..."}`.
    pub fn into_response(self) -> Resp {
        match &self {
            ApiError::Service(ServiceError::Internal { reason }) => {
                tracing::error!(%reason, "admin API internal error")
            }
            ApiError::Service(ServiceError::Unavailable { reason }) => {
                tracing::warn!(%reason, "admin API request failed: store unavailable")
            }
            e => tracing::info!(error = %e, "admin API request refused"),
        }
        let mut body = serde_json::json!({ "error": self.to_string() });
        if let ApiError::Service(ServiceError::Invalid { field, .. }) = &self {
            body["field"] = field.as_str().into();
        }
        let mut r = json(self.status(), &body);
        if matches!(self, ApiError::Service(ServiceError::Unauthorized)) {
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, ApiError::Service(ServiceError::Unavailable { .. })) {
            r.headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        r
    }
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

/// `{"<key>": items, "next": cursor}`.
fn page_json<T: Serialize>(key: &str, p: &crate::service::Page<T>) -> Resp {
    let mut v = serde_json::Map::new();
    v.insert(
        key.into(),
        serde_json::to_value(&p.items).unwrap_or_default(),
    );
    v.insert(
        "next".into(),
        serde_json::to_value(&p.next).unwrap_or_default(),
    );
    json(StatusCode::OK, &v)
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
    ("POST", "/api/v1/apps"),
    ("GET", "/api/v1/apps"),
    ("GET", "/api/v1/apps/{app_id}"),
    ("DELETE", "/api/v1/apps/{app_id}"),
    ("PUT", "/api/v1/apps/{app_id}/content"),
    ("POST", "/api/v1/apps/{app_id}/assignments"),
    ("DELETE", "/api/v1/apps/{app_id}/assignments/{group_id}"),
    ("GET", "/api/v1/apps/{app_id}/devices"),
    ("GET", "/api/v1/devices/{device_id}/apps"),
    ("POST", "/api/v1/esp"),
    ("GET", "/api/v1/esp"),
    ("GET", "/api/v1/esp/{esp_id}"),
    ("PUT", "/api/v1/esp/{esp_id}"),
    ("DELETE", "/api/v1/esp/{esp_id}"),
    ("POST", "/api/v1/esp/{esp_id}/assignments"),
    ("DELETE", "/api/v1/esp/{esp_id}/assignments/{group_id}"),
    ("GET", "/api/v1/devices/{device_id}/esp"),
    ("GET", "/api/v1/jobs"),
    ("GET", "/api/v1/enrollments/refused"),
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
    ("POST", "/api/v1/devices/{device_id}/trace"),
    ("DELETE", "/api/v1/devices/{device_id}/trace"),
    ("GET", "/api/v1/devices/{device_id}/traces"),
    ("GET", "/api/v1/devices/{device_id}/traces/{trace_id}"),
    ("DELETE", "/api/v1/devices/{device_id}/traces/{trace_id}"),
    (
        "GET",
        "/api/v1/devices/{device_id}/traces/{trace_id}/export",
    ),
    ("POST", "/api/v1/groups/{group_id}/trace"),
    ("POST", "/api/v1/users/{upn}/trace"),
    ("DELETE", "/api/v1/users/{upn}/trace"),
    ("GET", "/api/v1/webhook"),
    ("GET", "/api/v1/webhook/dead-letters"),
    ("GET", "/api/v1/webhook/dead-letters/{event_id}"),
    ("DELETE", "/api/v1/webhook/dead-letters/{event_id}"),
    ("POST", "/api/v1/webhook/dead-letters/{event_id}/redeliver"),
    ("GET", "/api/v1/tenant"),
    ("PUT", "/api/v1/tenant"),
    ("DELETE", "/api/v1/tenant"),
    ("POST", "/api/v1/tenant/sync"),
    ("GET", "/api/v1/tenant/groups"),
    ("POST", "/api/v1/tenant/groups"),
    ("DELETE", "/api/v1/tenant/groups/{group_id}"),
    ("POST", "/api/v1/tenant/groups/{group_id}/members"),
    ("GET", "/api/v1/tenant/profiles"),
    ("POST", "/api/v1/tenant/profiles/{profile}/assignments"),
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
    Apps(apps::Ep<'a>),
    DeviceApps(&'a str),
    DeviceEsp(&'a str),
    Autopilot(autopilot::Route<'a>),
    Webhook(webhook::Route<'a>),
    Tenant(tenant::Route<'a>),
    Backup,
    ListJobs,
    GetJob(&'a str),
    RefusedEnrollments,
    Traces(traces::Route<'a>),
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
    if let Some(r) = traces::endpoint(segs, method) {
        return r.map(E::Traces);
    }
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
        (["apps", ..], _) => E::Apps(apps::endpoint(segs, method)?),
        (["devices", id, "apps"], Method::GET) => E::DeviceApps(id),
        (["esp", ..], _) => E::Apps(apps::endpoint(segs, method)?),
        (["devices", id, "esp"], Method::GET) => E::DeviceEsp(id),
        (["autopilot", rest @ ..], m) => E::Autopilot(autopilot::endpoint(rest, &m)?),
        (["webhook", rest @ ..], m) => E::Webhook(webhook::endpoint(rest, &m)?),
        (["tenant", rest @ ..], m) => E::Tenant(tenant::endpoint(rest, &m)?),
        (["backup"], Method::POST) => E::Backup,
        (["jobs"], Method::GET) => E::ListJobs,
        (["jobs", id], Method::GET) => E::GetJob(id),
        (["enrollments", "refused"], Method::GET) => E::RefusedEnrollments,
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
            | ["devices", _, "apps"]
            | ["devices", _, "esp"]
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
            | ["enrollments", "refused"]
            | ["backup"],
            _,
        ) => return Err(ApiError::MethodNotAllowed),
        _ => return Err(not_found("route")),
    })
}

async fn route(app: Arc<App>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let actor = tokens::authenticate(&app, &req).await?;
    tracing::Span::current().record("actor", actor.name.as_str());
    let segs = segments(req.uri().path())?;
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let method = req.method().clone();
    let ep = endpoint(&segs, &method)?;
    // The decoded path: `%2D` must not let a read-only token around ADMIN_ONLY_GETS. (The
    // service checks the role again for every change.)
    tokens::authorize(&actor, &method, &format!("/api/v1/{}", segs.join("/")))?;
    dispatch(app, &actor, req, ep).await
}

async fn dispatch(
    app: Arc<App>,
    actor: &Actor,
    req: Request<Incoming>,
    ep: Endpoint<'_>,
) -> Result<Resp, ApiError> {
    let q = req.uri().query().unwrap_or("").to_string();
    let q = q.as_str();
    match ep {
        Endpoint::CreateUser => users::create(&app, actor, req).await,
        Endpoint::ListUsers => users::list(&app, q).await,
        Endpoint::GetUser(upn) => users::get(&app, upn).await,
        Endpoint::PatchUser(upn) => users::patch(&app, actor, upn, req).await,
        Endpoint::DeleteUser(upn) => users::delete(&app, actor, upn).await,
        Endpoint::ListDevices => devices::list(&app, q).await,
        Endpoint::GetDevice(id) => devices::get(&app, id).await,
        Endpoint::DeleteDevice(id) => devices::delete(&app, actor, id).await,
        Endpoint::CreateAction(id) => devices::create_action(&app, actor, id, req).await,
        Endpoint::GetAction(id, aid) => devices::get_action(&app, id, aid).await,
        Endpoint::ListAudit => users::audit_log(&app, q).await,
        Endpoint::CreateCommand(id) => devices::create_command(&app, actor, id, req).await,
        Endpoint::ListCommands(id) => devices::list_commands(&app, id).await,
        Endpoint::ClearCommands(id) => devices::clear_commands(&app, actor, id).await,
        Endpoint::CancelCommand(id, cid) => devices::cancel_command(&app, actor, id, cid).await,
        Endpoint::BulkCommand => devices::bulk_command(&app, actor, req).await,
        Endpoint::TenantLockdown(id) => devices::tenant_lockdown(&app, actor, id, req).await,
        Endpoint::AssignUser(id) => devices::assign_user(&app, actor, id, req).await,
        Endpoint::TransferDevice(id) => devices::transfer(&app, actor, id, req).await,
        Endpoint::OpenApi => Ok(json(StatusCode::OK, &openapi::document())),
        Endpoint::CreateToken => tokens::create(&app, actor, req).await,
        Endpoint::ListTokens => tokens::list(&app, q).await,
        Endpoint::RevokeToken(name) => tokens::revoke(&app, actor, name).await,
        Endpoint::CreateInvitation => invitations::create(&app, actor, req).await,
        Endpoint::ListInvitations => invitations::list(&app, q).await,
        Endpoint::RevokeInvitation(id) => invitations::revoke(&app, actor, id).await,
        Endpoint::BulkPackage => bulk::package(&app, actor, q).await,
        Endpoint::RevokeBulkPackage(id) => bulk::revoke(&app, actor, id).await,
        Endpoint::Groups(ep) => groups::handle(&app, actor, ep, req).await,
        Endpoint::Profiles(ep) => profiles::handle(&app, actor, ep, req).await,
        Endpoint::DeviceProfiles(id) => devices::profiles(&app, id).await,
        Endpoint::Apps(ep) => apps::handle(&app, actor, ep, req).await,
        Endpoint::DeviceApps(id) => apps::device_apps(&app, id).await,
        Endpoint::DeviceEsp(id) => apps::device_esp(&app, id).await,
        Endpoint::Autopilot(r) => autopilot::handle(&app, actor, r, req).await,
        Endpoint::ListJobs => devices::list_jobs(&app, q).await,
        Endpoint::GetJob(id) => devices::get_job(&app, id).await,
        Endpoint::RefusedEnrollments => Ok(json(
            StatusCode::OK,
            &crate::service::dashboard::refused(&app).await?,
        )),
        Endpoint::Webhook(r) => webhook::handle(&app, actor, r, q).await,
        Endpoint::Tenant(r) => tenant::handle(&app, actor, r, req).await,
        Endpoint::Backup => backup::create(&app, actor, req).await,
        Endpoint::Traces(r) => traces::handle(&app, actor, r, req).await,
    }
}

async fn json_body<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T, ApiError> {
    json_body_limited(req, MAX_ADMIN_BODY).await
}

/// Reads a request body of at most `limit` bytes in the body timeout (413, 400).
async fn body_bytes(
    req: Request<Incoming>,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    read_body(req.into_body(), limit, timeout)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge(limit) => ApiError::TooLarge { limit },
            BodyError::Timeout => bad("body not received in time"),
            BodyError::Broken(r) => bad(r),
        })
}

/// A JSON body that may be left out: an empty body (with or without a Content-Type) gives
/// `T::default()`; anything else is read as [`json_body_limited`] reads it.
async fn optional_json_body<T: for<'de> Deserialize<'de> + Default>(
    req: Request<Incoming>,
    limit: usize,
) -> Result<T, ApiError> {
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let timeout = BodyTimeout::of(&req);
    let body = body_bytes(req, limit, timeout).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    if !ct.starts_with("application/json") {
        return Err(bad(format!(
            "Content-Type must be application/json, got {ct:?}"
        )));
    }
    serde_json::from_slice(&body).map_err(|e| bad(format!("invalid JSON: {e}")))
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
        return Err(bad(format!(
            "Content-Type must be application/json, got {ct:?}"
        )));
    }
    let timeout = BodyTimeout::of(&req);
    let body = body_bytes(req, limit, timeout).await?;
    serde_json::from_slice(&body).map_err(|e| bad(format!("invalid JSON: {e}")))
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
                    .ok_or_else(|| bad(format!("limit must be an integer in 1..={MAX_PAGE}")))?;
            }
            "cursor" => cursor = Some(v).filter(|c| !c.is_empty()),
            other => {
                if !extra(other, v)? {
                    return Err(bad(format!("unknown query parameter {other:?}")));
                }
            }
        }
    }
    Ok((limit, cursor))
}

/// Decodes `%XX` escapes (and nothing else) in a path segment or query value.
fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bad = || bad("invalid percent-encoding");
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
    use crate::service::validate_upn;

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
            if *template == "/api/v1/users/{upn}" {
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
                    Err(ApiError::Service(ServiceError::NotFound { .. })) => {
                        assert!(!any, "{m} /{}: 404 but in ROUTES", segs.join("/"))
                    }
                    Err(e) => panic!("{m} /{}: {e}", segs.join("/")),
                }
            }
        }
        assert!(served >= ROUTES.len());
    }
}
