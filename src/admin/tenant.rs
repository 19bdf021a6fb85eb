//! Admin API of the Microsoft tenant (`/api/v1/tenant/...`; rules in
//! [`crate::service::tenant`], Graph work in [`crate::tenant`]).
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/api/v1/tenant` | 200 the connection's state (never the secret or key) |
//! | PUT | `/api/v1/tenant` | 200 connected; 400 bad field; 409 the tenant refused (reason given) |
//! | DELETE | `/api/v1/tenant` | 204; 404 not connected |
//! | POST | `/api/v1/tenant/sync?dry_run=true` | 200 the pass's report (dry: what it would change) |
//! | GET | `/api/v1/tenant/groups` | 200 Entra groups winmdm created |
//! | POST | `/api/v1/tenant/groups` | 201 the group; 400; 409 |
//! | DELETE | `/api/v1/tenant/groups/{group_id}` | 204; 404 not created by winmdm |
//! | POST | `/api/v1/tenant/groups/{group_id}/members` | 200 `{"devices": [serial…]}` added to a static group; 404; 409 dynamic |
//! | GET | `/api/v1/tenant/profiles` | 200 the profiles' state in the tenant |
//! | POST | `/api/v1/tenant/profiles/{profile}/assignments` | 200 `{"group_id"}` assigned; 404; 409 |

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{bad, json, json_body, no_content, not_found, ApiError};
use crate::app::App;
use crate::http::body::Resp;
use crate::service::tenant::{self as svc, ConnectInput, GroupInput};
use crate::service::Actor;

/// A matched `/api/v1/tenant/...` route.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// GET the state.
    Status,
    /// PUT: connect.
    Connect,
    /// DELETE: disconnect.
    Disconnect,
    /// POST a sync pass.
    Sync,
    /// GET the groups.
    ListGroups,
    /// POST a group.
    CreateGroup,
    /// DELETE a group.
    DeleteGroup(&'a str),
    /// POST devices to a static group.
    AddMembers(&'a str),
    /// GET the profiles' state.
    ListProfiles,
    /// POST an assignment.
    Assign(&'a str),
}

/// Matches the segments after `tenant`.
pub fn endpoint<'a>(segs: &[&'a str], method: &Method) -> Result<Route<'a>, ApiError> {
    use Route as R;
    Ok(match (segs, method.clone()) {
        ([], Method::GET) => R::Status,
        ([], Method::PUT) => R::Connect,
        ([], Method::DELETE) => R::Disconnect,
        (["sync"], Method::POST) => R::Sync,
        (["groups"], Method::GET) => R::ListGroups,
        (["groups"], Method::POST) => R::CreateGroup,
        (["groups", id], Method::DELETE) => R::DeleteGroup(id),
        (["groups", id, "members"], Method::POST) => R::AddMembers(id),
        (["profiles"], Method::GET) => R::ListProfiles,
        (["profiles", p, "assignments"], Method::POST) => R::Assign(p),
        (
            []
            | ["sync"]
            | ["groups"]
            | ["groups", _]
            | ["groups", _, "members"]
            | ["profiles"]
            | ["profiles", _, "assignments"],
            _,
        ) => return Err(ApiError::MethodNotAllowed),
        _ => return Err(not_found("route")),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersInput {
    devices: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignInput {
    group_id: String,
}

fn dry_run(query: &str) -> Result<bool, ApiError> {
    let mut dry = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("dry_run", "true" | "1")) => dry = true,
            Some(("dry_run", "false" | "0")) => dry = false,
            _ => {
                return Err(bad(format!(
                    "unknown query parameter {pair:?} (dry_run=true|false)"
                )))
            }
        }
    }
    Ok(dry)
}

/// Runs one tenant route.
pub async fn handle(
    app: &Arc<App>,
    actor: &Actor,
    r: Route<'_>,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    match r {
        Route::Status => Ok(json(StatusCode::OK, &svc::status(app).await?)),
        Route::Connect => {
            // The role first: a read-only token never gets to upload a key.
            actor.require_admin("PUT /api/v1/tenant")?;
            let input: ConnectInput = json_body(req).await?;
            Ok(json(
                StatusCode::OK,
                &svc::connect(app, actor, input).await?,
            ))
        }
        Route::Disconnect => {
            svc::disconnect(app, actor).await?;
            Ok(no_content())
        }
        Route::Sync => {
            let dry = dry_run(req.uri().query().unwrap_or(""))?;
            Ok(json(StatusCode::OK, &svc::sync(app, actor, dry).await?))
        }
        Route::ListGroups => Ok(json(
            StatusCode::OK,
            &json!({ "groups": svc::list_groups(app).await? }),
        )),
        Route::CreateGroup => {
            let input: GroupInput = json_body(req).await?;
            Ok(json(
                StatusCode::CREATED,
                &svc::create_group(app, actor, input).await?,
            ))
        }
        Route::DeleteGroup(id) => {
            svc::delete_group(app, actor, id).await?;
            Ok(no_content())
        }
        Route::AddMembers(id) => {
            let input: MembersInput = json_body(req).await?;
            Ok(json(
                StatusCode::OK,
                &svc::add_group_members(app, actor, id, input.devices).await?,
            ))
        }
        Route::ListProfiles => Ok(json(
            StatusCode::OK,
            &json!({ "profiles": svc::list_profiles(app).await? }),
        )),
        Route::Assign(p) => {
            let input: AssignInput = json_body(req).await?;
            Ok(json(
                StatusCode::OK,
                &svc::assign_profile(app, actor, p, &input.group_id).await?,
            ))
        }
    }
}

/// The OpenAPI paths and schemas of these routes (merged into [`super::openapi::document`]).
pub mod openapi {
    use serde_json::{json, Value};

    use crate::admin::openapi::{body, common, err, ok};

    /// Paths of the tenant routes.
    pub fn paths() -> Value {
        json!({
            "/api/v1/tenant": {
                "get": {"operationId": "getTenant", "summary": "The Microsoft tenant connection: ids, credential kind and thumbprint, last sync, last error, pending changes (never the secret)",
                    "responses": common(json!({"200": ok("The state.", "TenantStatus")}))},
                "put": {"operationId": "connectTenant", "summary": "Connect a Microsoft tenant: the credential is validated by a client-credentials token and GET /v1.0/organization, then stored (mode 0600)",
                    "requestBody": body("TenantConnect"),
                    "responses": common(json!({"200": ok("Connected.", "TenantStatus"), "400": err("A field is wrong (`field` names it)."), "409": err("The tenant refused the credential, or the organization is another tenant's.")}))},
                "delete": {"operationId": "disconnectTenant", "summary": "Disconnect: the connection and the stored credential are removed (nothing is deleted in the tenant)",
                    "responses": common(json!({"204": {"description": "Disconnected."}, "404": err("No tenant connected.")}))}
            },
            "/api/v1/tenant/sync": {
                "post": {"operationId": "syncTenant", "summary": "Run a sync pass now: push pending changes, follow imports, pull the tenant's Autopilot devices; with dry_run=true, only show what it would change",
                    "parameters": [{"name": "dry_run", "in": "query", "required": false, "schema": {"type": "boolean"}}],
                    "responses": common(json!({"200": ok("The pass's report (`error` set when the connection failed).", "TenantSyncReport"), "409": err("No tenant connected, or a pass runs on another node.")}))}
            },
            "/api/v1/tenant/groups": {
                "get": {"operationId": "listTenantGroups", "summary": "Entra groups winmdm created",
                    "responses": common(json!({"200": {"description": "The groups.", "content": {"application/json": {"schema": {"type": "object", "properties": {"groups": {"type": "array", "items": {"$ref": "#/components/schemas/EntraGroup"}}}}}}}}))},
                "post": {"operationId": "createTenantGroup", "summary": "Create an Entra security group: dynamic on a group tag ([OrderID]), a ZTDId or every Autopilot device, or static with chosen devices",
                    "requestBody": body("EntraGroupInput"),
                    "responses": common(json!({"201": ok("Created.", "EntraGroup"), "400": err("A field is wrong."), "409": err("Not connected, or Graph refused.")}))}
            },
            "/api/v1/tenant/groups/{group_id}": {
                "delete": {"operationId": "deleteTenantGroup", "summary": "Delete an Entra group winmdm created (no other)",
                    "parameters": [{"name": "group_id", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "responses": common(json!({"204": {"description": "Deleted."}, "404": err("Not a group winmdm created."), "409": err("Graph refused.")}))}
            },
            "/api/v1/tenant/groups/{group_id}/members": {
                "post": {"operationId": "addTenantGroupMembers", "summary": "Add devices (serial numbers registered in the tenant) to a static Entra group winmdm created",
                    "parameters": [{"name": "group_id", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["devices"], "properties": {"devices": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": crate::tenant::shapes::MAX_STATIC_MEMBERS}}}}}},
                    "responses": common(json!({"200": ok("The group.", "EntraGroup"), "400": err("A device is not registered in the tenant."), "404": err("Not a group winmdm created."), "409": err("A dynamic group, or Graph refused.")}))}
            },
            "/api/v1/tenant/profiles": {
                "get": {"operationId": "listTenantProfiles", "summary": "The Autopilot profiles' state in the tenant (Graph id, pending push, assignments)",
                    "responses": common(json!({"200": {"description": "The profiles.", "content": {"application/json": {"schema": {"type": "object", "properties": {"profiles": {"type": "array", "items": {"$ref": "#/components/schemas/TenantProfile"}}}}}}}}))}
            },
            "/api/v1/tenant/profiles/{profile}/assignments": {
                "post": {"operationId": "assignTenantProfile", "summary": "Assign an Autopilot profile (created in the tenant first if needed) to an Entra group",
                    "parameters": [{"name": "profile", "in": "path", "required": true, "description": "Profile id, or its name.", "schema": {"type": "string"}}],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["group_id"], "properties": {"group_id": {"type": "string", "description": "An Entra group object id, or `all-devices` (one profile per tenant)."}}}}}},
                    "responses": common(json!({"200": ok("Assigned.", "TenantProfile"), "400": err("Bad group id."), "404": err("Unknown profile."), "409": err("Not connected, or Graph refused.")}))}
            }
        })
    }

    /// Schemas of the tenant routes.
    pub fn schemas() -> Value {
        let nstr = json!({"type": "string", "nullable": true});
        let nint = json!({"type": "integer", "nullable": true});
        json!({
            "TenantStatus": {"type": "object", "properties": {
                "state": {"type": "string", "enum": ["connected", "error", "not_connected"]},
                "tenant_id": {"type": "string"}, "client_id": {"type": "string"},
                "credential": {"type": "object", "properties": {"kind": {"type": "string", "enum": ["certificate", "secret"]}, "thumbprint": nstr, "thumbprint_sha256": nstr, "not_after": nint}},
                "organization": nstr, "connected_at": {"type": "integer"}, "connected_by": {"type": "string"},
                "last_sync": nint, "last_pull": nint,
                "last_error": {"type": "object", "nullable": true, "properties": {"at": {"type": "integer"}, "message": {"type": "string"}}},
                "pending_devices": {"type": "integer"}, "import_errors": {"type": "integer"}, "pending_profiles": {"type": "integer"},
                "login_url": {"type": "string"}, "graph_url": {"type": "string"}, "sync_interval_secs": nint
            }},
            "TenantConnect": {"type": "object", "required": ["tenant_id", "client_id"], "properties": {
                "tenant_id": {"type": "string", "format": "uuid"}, "client_id": {"type": "string", "format": "uuid"},
                "certificate_pem": {"type": "string", "description": "The certificate uploaded to the app registration (with private_key_pem)."},
                "private_key_pem": {"type": "string", "description": "Its RSA private key (PKCS#8 or PKCS#1 PEM). Stored 0600, never returned."},
                "client_secret": {"type": "string", "description": "Or a client secret. Stored 0600, never returned."}
            }},
            "TenantSyncReport": {"type": "object", "properties": {
                "dry_run": {"type": "boolean"}, "pulled": {"type": "boolean"},
                "changes": {"type": "array", "items": {"type": "object", "properties": {"action": {"type": "string"}, "target": {"type": "string"}, "detail": {"type": "object"}}}},
                "failures": {"type": "array", "items": {"type": "object"}},
                "error": nstr
            }},
            "EntraGroupInput": {"type": "object", "required": ["name"], "description": "A name and exactly one of group_tag, ztd_id, all_autopilot, devices.", "properties": {
                "name": {"type": "string"}, "description": {"type": "string"},
                "group_tag": {"type": "string", "description": "Dynamic: (device.devicePhysicalIds -any (_ -eq \"[OrderID]:<tag>\"))"},
                "ztd_id": {"type": "string", "description": "Dynamic: (device.devicePhysicalIds -any (_ -eq \"[ZTDId]:<id>\"))"},
                "all_autopilot": {"type": "boolean", "description": "Dynamic: every Autopilot device ([ZTDid] prefix)."},
                "devices": {"type": "array", "items": {"type": "string"}, "maxItems": crate::tenant::shapes::MAX_STATIC_MEMBERS, "description": "Static: serial numbers of devices registered in the tenant."}
            }},
            "EntraGroup": {"type": "object", "properties": {
                "id": {"type": "string"}, "display_name": {"type": "string"}, "mail_nickname": {"type": "string"},
                "kind": {"type": "string", "enum": ["dynamic", "static"]}, "membership_rule": nstr,
                "devices": {"type": "array", "items": {"type": "string"}}, "created_at": {"type": "integer"}, "created_by": {"type": "string"}
            }},
            "TenantProfile": {"type": "object", "properties": {
                "profile_id": {"type": "string"}, "name": {"type": "string"}, "graph_id": nstr,
                "push": {"type": "boolean"}, "delete": {"type": "boolean"}, "rev": {"type": "integer"},
                "assignments": {"type": "array", "items": {"type": "object", "properties": {"group_id": {"type": "string"}, "assignment_id": nstr}}},
                "attempts": {"type": "integer"}, "last_error": nstr, "updated_at": {"type": "integer"}
            }}
        })
    }
}
