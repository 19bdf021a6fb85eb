//! Admin API for Windows Autopilot (`/api/v1/autopilot/...`): profiles and their export,
//! registered devices (CSV import, list, edit, delete) and the global settings.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `/api/v1/autopilot/profiles` profile | 201 profile; 400 `{"error","field"}`; 409 name taken / all groups taken |
//! | GET | `/api/v1/autopilot/profiles` | 200 `{"profiles": [...]}` (by name) |
//! | GET | `/api/v1/autopilot/profiles/{profile}` (id or name) | 200 profile; 404 |
//! | PUT | `/api/v1/autopilot/profiles/{profile}` profile | 200 profile; 400; 404; 409 |
//! | DELETE | `/api/v1/autopilot/profiles/{profile}` | 204; 404 |
//! | GET | `/api/v1/autopilot/profiles/{profile}/export` | 200 `AutopilotConfigurationFile.json`; 404; 409 tenant not configured |
//! | GET | `/api/v1/autopilot/settings` | 200 `{"tenant_lockdown"}` |
//! | PUT | `/api/v1/autopilot/settings` `{"tenant_lockdown": bool}` | 200 settings + `queued` |
//! | POST | `/api/v1/autopilot/devices` CSV body (`text/csv`) | 200 `{"imported", "errors": [{"row","error"}]}`; 400 unreadable file; 413 |
//! | GET | `/api/v1/autopilot/devices?serial=&group_tag=&user=&linked=&limit=&cursor=` | 200 `{"devices", "next"}` |
//! | GET | `/api/v1/autopilot/devices/{serial}` | 200 device (with hardware hash); 404 |
//! | PATCH | `/api/v1/autopilot/devices/{serial}` `{"user","user_friendly_name","device_name","group_tag"}` | 200 device; 400 `{"error","field"}`; 404 |
//! | DELETE | `/api/v1/autopilot/devices/{serial}` | 204; 404 |

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_DISPOSITION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use super::{bad, body_bytes, json, json_body, no_content, not_found, page_query_with, ApiError};
use crate::app::App;
use crate::autopilot::devices::{DevicePatch, DeviceSummary, Filter};
use crate::autopilot::Settings;
use crate::http::body::{BodyTimeout, Resp};
use crate::service::autopilot::{self as svc, profile_input};
use crate::service::{Actor, ServiceError};

/// Largest CSV import body: 10,000 rows with real (~4,000 character) hashes are ~41 MB in
/// UTF-8 and twice that in PowerShell's UTF-16.
pub const MAX_IMPORT_BODY: usize = 128 * 1024 * 1024;

/// A matched `/api/v1/autopilot/...` route.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// POST profiles.
    CreateProfile,
    /// GET profiles.
    ListProfiles,
    /// GET one profile.
    GetProfile(&'a str),
    /// PUT one profile.
    ReplaceProfile(&'a str),
    /// DELETE one profile.
    DeleteProfile(&'a str),
    /// GET its export.
    ExportProfile(&'a str),
    /// GET settings.
    GetSettings,
    /// PUT settings.
    PutSettings,
    /// POST devices (CSV).
    ImportDevices,
    /// GET devices.
    ListDevices,
    /// GET one device.
    GetDevice(&'a str),
    /// PATCH one device.
    PatchDevice(&'a str),
    /// DELETE one device.
    DeleteDevice(&'a str),
}

/// Matches the segments after `autopilot`.
pub fn endpoint<'a>(segs: &[&'a str], method: &Method) -> Result<Route<'a>, ApiError> {
    use Route as R;
    Ok(match (segs, method.clone()) {
        (["profiles"], Method::POST) => R::CreateProfile,
        (["profiles"], Method::GET) => R::ListProfiles,
        (["profiles", p], Method::GET) => R::GetProfile(p),
        (["profiles", p], Method::PUT) => R::ReplaceProfile(p),
        (["profiles", p], Method::DELETE) => R::DeleteProfile(p),
        (["profiles", p, "export"], Method::GET) => R::ExportProfile(p),
        (["settings"], Method::GET) => R::GetSettings,
        (["settings"], Method::PUT) => R::PutSettings,
        (["devices"], Method::POST) => R::ImportDevices,
        (["devices"], Method::GET) => R::ListDevices,
        (["devices", s], Method::GET) => R::GetDevice(s),
        (["devices", s], Method::PATCH) => R::PatchDevice(s),
        (["devices", s], Method::DELETE) => R::DeleteDevice(s),
        (
            ["profiles"]
            | ["profiles", _]
            | ["profiles", _, "export"]
            | ["settings"]
            | ["devices"]
            | ["devices", _],
            _,
        ) => return Err(ApiError::MethodNotAllowed),
        _ => return Err(not_found("route")),
    })
}

/// Runs one Autopilot route.
pub(super) async fn handle(
    app: &Arc<App>,
    actor: &Actor,
    r: Route<'_>,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    match r {
        Route::CreateProfile => {
            let input = profile_input(json_body(req).await?)?;
            Ok(json(
                StatusCode::CREATED,
                &svc::create_profile(app, actor, input).await?,
            ))
        }
        Route::ListProfiles => {
            let all = svc::list_profiles(app).await?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "profiles": all }),
            ))
        }
        Route::GetProfile(p) => Ok(json(StatusCode::OK, &svc::get_profile(app, p).await?)),
        Route::ReplaceProfile(p) => {
            let input = profile_input(json_body(req).await?)?;
            Ok(json(
                StatusCode::OK,
                &svc::replace_profile(app, actor, p, input).await?,
            ))
        }
        Route::DeleteProfile(p) => {
            svc::delete_profile(app, actor, p).await?;
            Ok(no_content())
        }
        Route::ExportProfile(p) => {
            let body = svc::export_profile(app, p).await?;
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r.headers_mut().insert(
                CONTENT_DISPOSITION,
                HeaderValue::from_static(
                    "attachment; filename=\"AutopilotConfigurationFile.json\"",
                ),
            );
            Ok(r)
        }
        Route::GetSettings => Ok(json(StatusCode::OK, &svc::settings(app).await?)),
        Route::PutSettings => {
            let v: Settings = json_body(req).await?;
            let on = v.tenant_lockdown;
            let queued = svc::put_settings(app, actor, v).await?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "tenant_lockdown": on, "queued": queued }),
            ))
        }
        Route::ImportDevices => import_devices(app, actor, req).await,
        Route::ListDevices => list_devices(app, req.uri().query().unwrap_or("")).await,
        Route::GetDevice(s) => {
            let d = svc::get_device(app, s).await?;
            let mut v = serde_json::to_value(&d).map_err(|e| ServiceError::Internal {
                reason: e.to_string(),
            })?;
            // Its state in the Microsoft tenant (import status and error, Autopilot id).
            if let (Some(m), Some(t)) = (
                v.as_object_mut(),
                crate::service::tenant::device_state(app, s).await?,
            ) {
                m.insert("tenant".into(), t);
            }
            Ok(json(StatusCode::OK, &v))
        }
        Route::PatchDevice(s) => {
            let patch: DevicePatch = json_body(req).await?;
            Ok(json(
                StatusCode::OK,
                &svc::patch_device(app, actor, s, patch).await?,
            ))
        }
        Route::DeleteDevice(s) => {
            svc::delete_device(app, actor, s).await?;
            Ok(no_content())
        }
    }
}

async fn import_devices(
    app: &Arc<App>,
    actor: &Actor,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !["text/csv", "text/plain", "application/octet-stream"]
        .iter()
        .any(|t| ct.starts_with(t))
    {
        return Err(bad(format!(
            "send the CSV file itself with Content-Type text/csv (got {ct:?}); \
             UTF-8 and UTF-16 files are both accepted"
        )));
    }
    // The role is checked before a large body is read (the service checks it again).
    actor.require_admin("POST /api/v1/autopilot/devices")?;
    // A 20,000-row UTF-16 export is ~160 MB: allow it minutes, not the API's usual seconds.
    let timeout = BodyTimeout::of(&req).max(std::time::Duration::from_secs(300));
    let body = body_bytes(req, MAX_IMPORT_BODY, timeout).await?;
    Ok(json(
        StatusCode::OK,
        &svc::import_devices(app, actor, body).await?,
    ))
}

async fn list_devices(app: &Arc<App>, query: &str) -> Result<Resp, ApiError> {
    let mut f = Filter::default();
    let (limit, cursor) = page_query_with(query, |k, v| {
        match k {
            "serial" => f.serial = Some(v).filter(|s| !s.trim().is_empty()),
            "group_tag" => f.group_tag = Some(v),
            "user" => f.user = Some(v),
            "linked" => {
                f.linked = Some(match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ServiceError::Invalid {
                            field: "linked".into(),
                            reason: "linked must be true or false".into(),
                        }
                        .into())
                    }
                })
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let page = svc::list_devices(app, cursor, limit, f).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "devices": page.items.iter().map(DeviceSummary::from).collect::<Vec<_>>(), "next": page.next }),
    ))
}

/// The OpenAPI paths and schemas of these routes (merged into [`super::openapi::document`]).
pub mod openapi {
    use serde_json::{json, Value};

    use crate::admin::openapi::{body, common, err, ok};

    fn invalid(d: &str) -> Value {
        json!({"description": d, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FieldError"}}}})
    }

    fn profile_param() -> Value {
        json!({"name": "profile", "in": "path", "required": true, "description": "Profile id, or its name.", "schema": {"type": "string"}})
    }

    fn serial_param() -> Value {
        json!({"name": "serial", "in": "path", "required": true, "description": "Device serial number (case-insensitive).", "schema": {"type": "string"}})
    }

    /// Paths of the Autopilot routes.
    pub fn paths() -> Value {
        json!({
            "/api/v1/autopilot/profiles": {
                "post": {"operationId": "createAutopilotProfile", "summary": "Create an Autopilot profile", "requestBody": body("AutopilotProfileInput"),
                    "responses": common(json!({"201": ok("Created.", "AutopilotProfile"), "400": invalid("A setting breaks a rule; `field` names it."), "409": err("Name taken, or another profile is assigned to all groups.")}))},
                "get": {"operationId": "listAutopilotProfiles", "summary": "List Autopilot profiles (by name)",
                    "responses": common(json!({"200": {"description": "The profiles.", "content": {"application/json": {"schema": {"type": "object", "properties": {"profiles": {"type": "array", "items": {"$ref": "#/components/schemas/AutopilotProfile"}}}}}}}}))}
            },
            "/api/v1/autopilot/profiles/{profile}": {
                "get": {"operationId": "getAutopilotProfile", "summary": "One Autopilot profile", "parameters": [profile_param()],
                    "responses": common(json!({"200": ok("The profile.", "AutopilotProfile"), "404": err("Unknown profile.")}))},
                "put": {"operationId": "replaceAutopilotProfile", "summary": "Replace every setting of an Autopilot profile", "parameters": [profile_param()], "requestBody": body("AutopilotProfileInput"),
                    "responses": common(json!({"200": ok("The profile.", "AutopilotProfile"), "400": invalid("A setting breaks a rule."), "404": err("Unknown profile."), "409": err("Name taken, or another profile is assigned to all groups.")}))},
                "delete": {"operationId": "deleteAutopilotProfile", "summary": "Delete an Autopilot profile", "parameters": [profile_param()],
                    "responses": common(json!({"204": {"description": "Deleted."}, "404": err("Unknown profile.")}))}
            },
            "/api/v1/autopilot/profiles/{profile}/export": {
                "get": {"operationId": "exportAutopilotProfile", "summary": "The profile as AutopilotConfigurationFile.json (Autopilot for existing devices)", "parameters": [profile_param()],
                    "responses": common(json!({"200": {"description": "The file (ASCII JSON; `Content-Disposition: attachment`).", "content": {"application/json": {"schema": {"type": "object"}}}}, "404": err("Unknown profile."), "409": err("The server has no --tenant-id/--tenant-domain.")}))}
            },
            "/api/v1/autopilot/settings": {
                "get": {"operationId": "getAutopilotSettings", "summary": "Global Autopilot settings",
                    "responses": common(json!({"200": ok("The settings.", "AutopilotSettings")}))},
                "put": {"operationId": "putAutopilotSettings", "summary": "Set the global Autopilot settings (TenantLockdown for Autopilot devices)", "requestBody": body("AutopilotSettings"),
                    "responses": common(json!({"200": {"description": "The settings, and how many linked devices got TenantLockdown queued.", "content": {"application/json": {"schema": {"type": "object", "properties": {"tenant_lockdown": {"type": "boolean"}, "queued": {"type": "integer"}}}}}}, "400": err("Invalid JSON.")}))}
            },
            "/api/v1/autopilot/devices": {
                "post": {"operationId": "importAutopilotDevices", "summary": "Import the hardware-hash CSV of Get-WindowsAutoPilotInfo",
                    "requestBody": {"required": true, "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}, "example": "Device Serial Number,Windows Product ID,Hardware Hash,Group Tag,Assigned User\r\n5CG1234XYZ,,T0gCAQAc...,Sales,ann@contoso.com\r\n"}}},
                    "responses": common(json!({"200": ok("Imported rows and refused rows.", "AutopilotImport"), "400": err("Unreadable file: encoding, header, Content-Type."), "413": err("Body larger than 128 MiB.")}))},
                "get": {"operationId": "listAutopilotDevices", "summary": "List registered Autopilot devices",
                    "parameters": [
                        {"name": "serial", "in": "query", "required": false, "description": "Serial number prefix (case-insensitive).", "schema": {"type": "string"}},
                        {"name": "group_tag", "in": "query", "required": false, "schema": {"type": "string"}},
                        {"name": "user", "in": "query", "required": false, "schema": {"type": "string"}},
                        {"name": "linked", "in": "query", "required": false, "schema": {"type": "boolean"}},
                        {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": super::super::MAX_PAGE}},
                        {"name": "cursor", "in": "query", "required": false, "schema": {"type": "string"}}
                    ],
                    "responses": common(json!({"200": ok("A page.", "AutopilotDevicePage"), "400": err("Bad query parameter.")}))}
            },
            "/api/v1/autopilot/devices/{serial}": {
                "get": {"operationId": "getAutopilotDevice", "summary": "One registered device, with its hardware hash", "parameters": [serial_param()],
                    "responses": common(json!({"200": ok("The device.", "AutopilotDevice"), "404": err("Unknown serial.")}))},
                "patch": {"operationId": "patchAutopilotDevice", "summary": "Edit user, user-friendly name, device name, group tag or the linked device (null unsets)", "parameters": [serial_param()], "requestBody": body("AutopilotDevicePatch"),
                    "responses": common(json!({"200": ok("The device.", "AutopilotDevice"), "400": invalid("A value breaks a rule."), "404": err("Unknown serial.")}))},
                "delete": {"operationId": "deleteAutopilotDevice", "summary": "Delete a registered device", "parameters": [serial_param()],
                    "responses": common(json!({"204": {"description": "Deleted."}, "404": err("Unknown serial.")}))}
            }
        })
    }

    fn nstr() -> Value {
        json!({"type": "string", "nullable": true})
    }

    /// Schemas of the Autopilot routes.
    pub fn schemas() -> Value {
        let vis = json!({"type": "string", "enum": ["show", "hide"], "nullable": true});
        let input = json!({
            "name": {"type": "string", "maxLength": 128},
            "description": nstr(),
            "device_type": {"type": "string", "enum": ["windows-pc", "hololens"]},
            "deployment_mode": {"type": "string", "enum": ["self-deploying", "user-driven"], "description": "HoloLens: self-deploying only."},
            "allow_pre_provisioning": {"type": "boolean", "default": false, "description": "Not with self-deploying."},
            "user_account_type": {"type": "string", "enum": ["administrator", "standard"], "default": "standard"},
            "language": {"type": "string", "nullable": true, "description": "Locale tag (fr-FR) or os-default/null."},
            "auto_configure_keyboard": {"type": "boolean", "default": false, "description": "Needs a language other than the default."},
            "device_name_template": {"type": "string", "nullable": true, "description": "Letters, digits, hyphens, %SERIAL%, %RAND:n%; at most 15 characters expanded; not digits only."},
            "convert_all_targeted": {"type": "boolean", "default": false},
            "license_terms": vis.clone(),
            "privacy_settings": vis.clone(),
            "change_account_options": vis,
            "tenant_lockdown": {"type": "boolean", "nullable": true, "description": "null follows the global setting."},
            "groups": {"type": "array", "items": {"type": "string"}},
            "all_groups": {"type": "boolean", "default": false, "description": "One profile at most."}
        });
        let mut full = input.clone();
        if let Some(m) = full.as_object_mut() {
            m.insert(
                "id".into(),
                json!({"type": "string", "description": "GUID; the export's ZtdCorrelationId."}),
            );
            m.insert(
                "created_at".into(),
                json!({"type": "integer", "format": "int64"}),
            );
            m.insert(
                "updated_at".into(),
                json!({"type": "integer", "format": "int64"}),
            );
        }
        let device = json!({
            "serial": {"type": "string"}, "product_id": nstr(), "group_tag": nstr(), "assigned_user": nstr(),
            "user_friendly_name": nstr(), "device_name": nstr(), "linked_device_id": nstr(),
            "linked_at": {"type": "integer", "nullable": true}, "imported_at": {"type": "integer"},
            "conflicts": {"type": "array", "description": "Enrolled devices refused the link (another enrolled device holds it, or their hardware hash disagrees); resolve with linked_device_id.", "items": {"type": "object", "properties": {"device_id": {"type": "string"}, "reason": {"type": "string"}, "at": {"type": "integer"}}}}
        });
        let mut with_hash = device.clone();
        if let Some(m) = with_hash.as_object_mut() {
            m.insert(
                "hardware_hash".into(),
                json!({"type": "string", "format": "byte"}),
            );
            m.insert(
                "tenant".into(),
                json!({"type": "object", "description": "GET only, when a Microsoft tenant is connected and knows the device: `state` (importing, registered, error, deleting), `import_status` (Graph's deviceImportStatus), `device_error_code`, `device_error_name`, `autopilot_id`, `created_by_winmdm`, `pending`, `last_error`."}),
            );
        }
        json!({
            "FieldError": {"type": "object", "required": ["error", "field"], "properties": {"error": {"type": "string"}, "field": {"type": "string"}}},
            "AutopilotProfileInput": {"type": "object", "additionalProperties": false, "required": ["name", "device_type", "deployment_mode"], "properties": input},
            "AutopilotProfile": {"type": "object", "properties": full},
            "AutopilotSettings": {"type": "object", "additionalProperties": false, "required": ["tenant_lockdown"], "properties": {"tenant_lockdown": {"type": "boolean"}}},
            "AutopilotImport": {"type": "object", "properties": {"imported": {"type": "integer"}, "errors": {"type": "array", "items": {"type": "object", "properties": {"row": {"type": "integer", "description": "Spreadsheet row (header = 1)."}, "error": {"type": "string"}}}}}},
            "AutopilotDeviceSummary": {"type": "object", "properties": device},
            "AutopilotDevice": {"type": "object", "properties": with_hash},
            "AutopilotDevicePage": {"type": "object", "properties": {"devices": {"type": "array", "items": {"$ref": "#/components/schemas/AutopilotDeviceSummary"}}, "next": nstr()}},
            "AutopilotDevicePatch": {"type": "object", "additionalProperties": false, "minProperties": 1, "properties": {"user": nstr(), "user_friendly_name": nstr(), "device_name": nstr(), "group_tag": nstr(), "linked_device_id": nstr()}}
        })
    }
}
