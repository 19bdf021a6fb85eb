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

use super::{audit, blocking, json, json_body, no_content, page_query_with, ApiError, SCAN_BUDGET};
use crate::app::App;
use crate::autopilot::csv::{self, serial_key};
use crate::autopilot::devices::{self, DevicePatch, DeviceSummary, Filter, DEVICES};
use crate::autopilot::export::{self, Tenant};
use crate::autopilot::profile::{self, FieldError, ProfileInput};
use crate::autopilot::profiles::{self, ProfileStoreError};
use crate::autopilot::{self as ap, Settings};
use crate::http::routes::{read_body, BodyError, Resp};

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
        _ => {
            return Err(ApiError::NotFound {
                what: "route".into(),
            })
        }
    })
}

/// Runs one Autopilot route.
pub async fn handle(app: Arc<App>, r: Route<'_>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    match r {
        Route::CreateProfile => create_profile(app, req).await,
        Route::ListProfiles => list_profiles(app).await,
        Route::GetProfile(p) => get_profile(app, p.to_string()).await,
        Route::ReplaceProfile(p) => replace_profile(app, p.to_string(), req).await,
        Route::DeleteProfile(p) => delete_profile(app, p.to_string()).await,
        Route::ExportProfile(p) => export_profile(app, p.to_string()).await,
        Route::GetSettings => {
            let s = blocking(move || Ok(ap::settings(app.store.records())?)).await?;
            Ok(json(StatusCode::OK, &s))
        }
        Route::PutSettings => put_settings(app, req).await,
        Route::ImportDevices => import_devices(app, req).await,
        Route::ListDevices => list_devices(app, req.uri().query().unwrap_or("")).await,
        Route::GetDevice(s) => get_device(app, s.to_string()).await,
        Route::PatchDevice(s) => patch_device(app, s.to_string(), req).await,
        Route::DeleteDevice(s) => delete_device(app, s.to_string()).await,
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> ApiError {
        ApiError::Invalid {
            field: e.field.to_string(),
            reason: format!("{}: {}", e.field, e.message),
        }
    }
}

impl From<ProfileStoreError> for ApiError {
    fn from(e: ProfileStoreError) -> ApiError {
        match e {
            ProfileStoreError::NotFound(id) => ApiError::NotFound {
                what: format!("Autopilot profile {id}"),
            },
            ProfileStoreError::Store(e) => e.into(),
            e @ (ProfileStoreError::NameTaken(_) | ProfileStoreError::AllGroupsTaken(_)) => {
                ApiError::Refused {
                    reason: e.to_string(),
                }
            }
        }
    }
}

impl From<ap::AssignmentError> for ApiError {
    fn from(e: ap::AssignmentError) -> ApiError {
        ApiError::Refused {
            reason: e.to_string(),
        }
    }
}

/// Decodes a profile request; a wrong value names its field (`{"field": "device_type"}`).
fn profile_input(v: serde_json::Value) -> Result<ProfileInput, ApiError> {
    match serde_json::from_value::<ProfileInput>(v.clone()) {
        Ok(i) => Ok(i),
        Err(e) => {
            // Every field is optional: the one that fails on its own is the culprit.
            let culprit = v.as_object().and_then(|m| {
                m.iter().find_map(|(k, x)| {
                    let alone = serde_json::json!({ k.as_str(): x });
                    serde_json::from_value::<ProfileInput>(alone)
                        .err()
                        .map(|e| (k.clone(), e))
                })
            });
            Err(match culprit {
                Some((field, e)) => ApiError::Invalid {
                    reason: format!("{field}: {e}"),
                    field,
                },
                None => ApiError::BadRequest {
                    reason: format!("invalid profile: {e}"),
                },
            })
        }
    }
}

fn profile_not_found(p: &str) -> ApiError {
    ApiError::NotFound {
        what: format!("Autopilot profile {p}"),
    }
}

/// Re-applies Autopilot-derived state (TenantLockdown) to every linked, enrolled device;
/// returns how many got a command queued.
fn reapply_linked(app: &App) -> Result<usize, ApiError> {
    let s = app.store.records();
    let mut queued = 0;
    let mut after: Option<String> = None;
    loop {
        let page = DEVICES.list(s, after.as_deref(), 500)?;
        let Some((last, _)) = page.last() else {
            return Ok(queued);
        };
        after = Some(last.clone());
        for (_, rec) in page {
            let Some(id) = rec.linked_device_id else {
                continue;
            };
            let Some(mut dev) = app.store.get_device(&id)? else {
                continue;
            };
            let before = dev.tenant_lockdown;
            ap::on_device_attributes_changed(app, &mut dev)?;
            if dev.tenant_lockdown != before {
                app.store.put_device(&dev)?;
                queued += 1;
            }
        }
    }
}

/// The groups a profile is assigned to must exist, and a Windows PC profile may not go to a
/// HoloLens group ([`ap::check_assignment`]).
fn check_groups(app: &App, p: &profile::Profile) -> Result<(), ApiError> {
    for gid in &p.groups {
        let g = match crate::groups::get(app, gid) {
            Ok(g) => g,
            Err(crate::groups::GroupError::NotFound(_)) => {
                return Err(ApiError::Invalid {
                    field: "groups".into(),
                    reason: format!("groups: there is no device group {gid:?}"),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let kind = if crate::groups::is_hololens_group(app, &g)? {
            ap::GroupKind::HoloLens
        } else {
            ap::GroupKind::Standard
        };
        ap::check_assignment(p, kind)?;
    }
    Ok(())
}

async fn create_profile(app: Arc<App>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let input = profile_input(json_body(req).await?)?;
    let p = blocking({
        let app = app.clone();
        move || {
            let now = app.clock.now_unix();
            let p = input.validate(&profile::new_id(), now, now)?;
            check_groups(&app, &p)?;
            profiles::create(app.store.records(), &p)?;
            if p.convert_all_targeted {
                let asked = crate::autopilot::convert::request_all(&app)?;
                tracing::info!(profile = %p.name, asked, "Autopilot conversion: devices asked for serial and hash");
            }
            if p.tenant_lockdown == Some(true) {
                reapply_linked(&app)?;
            }
            Ok(p)
        }
    })
    .await?;
    tracing::info!(profile_id = %p.id, name = %p.name, "Autopilot profile created");
    audit(
        &app,
        "autopilot.profile.create",
        &p.id,
        serde_json::json!({ "name": p.name }),
    )
    .await;
    Ok(json(StatusCode::CREATED, &p))
}

async fn list_profiles(app: Arc<App>) -> Result<Resp, ApiError> {
    let all = blocking(move || Ok(profiles::all(app.store.records())?)).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "profiles": all }),
    ))
}

async fn get_profile(app: Arc<App>, p: String) -> Result<Resp, ApiError> {
    let found = blocking({
        let p = p.clone();
        move || Ok(profiles::find(app.store.records(), &p)?)
    })
    .await?;
    found
        .map(|v| json(StatusCode::OK, &v))
        .ok_or_else(|| profile_not_found(&p))
}

async fn replace_profile(
    app: Arc<App>,
    p: String,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let input = profile_input(json_body(req).await?)?;
    let new = blocking({
        let (app, p) = (app.clone(), p.clone());
        move || {
            let s = app.store.records();
            let cur = profiles::find(s, &p)?.ok_or_else(|| profile_not_found(&p))?;
            let now = app.clock.now_unix();
            // Validate once against the current record's id and creation time.
            let checked = input.validate(&cur.id, cur.created_at, now)?;
            check_groups(&app, &checked)?;
            let (_, new) = profiles::replace(s, &cur.id, |_| checked.clone())?;
            if new.convert_all_targeted && !cur.convert_all_targeted {
                let asked = crate::autopilot::convert::request_all(&app)?;
                tracing::info!(profile = %new.name, asked, "Autopilot conversion: devices asked for serial and hash");
            }
            if new.tenant_lockdown == Some(true) {
                reapply_linked(&app)?;
            }
            Ok(new)
        }
    })
    .await?;
    tracing::info!(profile_id = %new.id, name = %new.name, "Autopilot profile replaced");
    audit(
        &app,
        "autopilot.profile.update",
        &new.id,
        serde_json::json!({ "name": new.name }),
    )
    .await;
    Ok(json(StatusCode::OK, &new))
}

async fn delete_profile(app: Arc<App>, p: String) -> Result<Resp, ApiError> {
    let gone = blocking({
        let (app, p) = (app.clone(), p.clone());
        move || {
            let s = app.store.records();
            let cur = profiles::find(s, &p)?.ok_or_else(|| profile_not_found(&p))?;
            profiles::delete(s, &cur.id)?.ok_or_else(|| profile_not_found(&p))
        }
    })
    .await?;
    tracing::info!(profile_id = %gone.id, name = %gone.name, "Autopilot profile deleted");
    audit(
        &app,
        "autopilot.profile.delete",
        &gone.id,
        serde_json::json!({ "name": gone.name }),
    )
    .await;
    Ok(no_content())
}

async fn export_profile(app: Arc<App>, p: String) -> Result<Resp, ApiError> {
    // An unknown profile is 404 whatever the configuration.
    let found = blocking({
        let (app, p) = (app.clone(), p.clone());
        move || Ok(profiles::find(app.store.records(), &p)?)
    })
    .await?;
    let profile = found.ok_or_else(|| profile_not_found(&p))?;
    let tenant = match (&app.cfg.tenant_id, &app.cfg.tenant_domain) {
        (Some(id), Some(domain)) => Tenant {
            id: id.clone(),
            domain: domain.clone(),
        },
        _ => {
            return Err(ApiError::Refused {
                reason: "exporting an Autopilot configuration file needs the Entra tenant: start \
                         the server with --tenant-id and --tenant-domain (WINMDM_TENANT_ID, \
                         WINMDM_TENANT_DOMAIN)"
                    .into(),
            })
        }
    };
    let body = export::write(&profile, &tenant);
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(
        CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"AutopilotConfigurationFile.json\""),
    );
    Ok(r)
}

async fn put_settings(app: Arc<App>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let v: Settings = json_body(req).await?;
    let queued = blocking({
        let app = app.clone();
        move || {
            ap::put_settings(app.store.records(), &v)?;
            if v.tenant_lockdown {
                reapply_linked(&app)
            } else {
                Ok(0)
            }
        }
    })
    .await?;
    tracing::info!(
        tenant_lockdown = v.tenant_lockdown,
        queued,
        "Autopilot settings changed"
    );
    audit(
        &app,
        "autopilot.settings",
        "settings",
        serde_json::json!({ "tenant_lockdown": v.tenant_lockdown, "queued": queued }),
    )
    .await;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "tenant_lockdown": v.tenant_lockdown, "queued": queued }),
    ))
}

async fn import_devices(app: Arc<App>, req: Request<Incoming>) -> Result<Resp, ApiError> {
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
        return Err(ApiError::BadRequest {
            reason: format!(
                "send the CSV file itself with Content-Type text/csv (got {ct:?}); \
                 UTF-8 and UTF-16 files are both accepted"
            ),
        });
    }
    let started = std::time::Instant::now();
    // A 20,000-row UTF-16 export is ~160 MB: allow it minutes, not the API's usual seconds.
    let timeout =
        crate::http::routes::BodyTimeout::of(&req).max(std::time::Duration::from_secs(300));
    let body = read_body(req.into_body(), MAX_IMPORT_BODY, timeout)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge(limit) => ApiError::TooLarge { limit },
            BodyError::Timeout => ApiError::BadRequest {
                reason: "body not received in time".into(),
            },
            BodyError::Broken(r) => ApiError::BadRequest { reason: r },
        })?;
    let bytes = body.len();
    let report = blocking({
        let app = app.clone();
        move || {
            let t = std::time::Instant::now();
            let parsed =
                csv::parse(&body, devices::MAX_IMPORT_ROWS).map_err(|e| ApiError::BadRequest {
                    reason: e.to_string(),
                })?;
            let parse_ms = t.elapsed().as_millis() as u64;
            let report = devices::import(app.store.records(), parsed, app.clock.now_unix())?;
            if report.imported > 0 {
                let (linked, asked) = crate::autopilot::convert::link_after_import(&app)?;
                tracing::info!(
                    linked,
                    asked,
                    "Autopilot import: enrolled devices linked or asked for their serial"
                );
            }
            tracing::debug!(
                parse_ms,
                store_ms = t.elapsed().as_millis() as u64 - parse_ms,
                "Autopilot import timing"
            );
            Ok(report)
        }
    })
    .await?;
    tracing::info!(
        bytes,
        imported = report.imported,
        refused = report.errors.len(),
        ms = started.elapsed().as_millis() as u64,
        "Autopilot devices imported"
    );
    audit(
        &app,
        "autopilot.device.import",
        "devices",
        serde_json::json!({ "imported": report.imported, "refused": report.errors.len() }),
    )
    .await;
    Ok(json(StatusCode::OK, &report))
}

async fn list_devices(app: Arc<App>, query: &str) -> Result<Resp, ApiError> {
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
                        return Err(ApiError::Invalid {
                            field: "linked".into(),
                            reason: "linked must be true or false".into(),
                        })
                    }
                })
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let (devs, next) = blocking(move || {
        Ok(devices::list(
            app.store.records(),
            cursor.as_deref(),
            limit,
            &f,
            SCAN_BUDGET,
        )?)
    })
    .await?;
    let views: Vec<DeviceSummary> = devs.iter().map(DeviceSummary::from).collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "devices": views, "next": next }),
    ))
}

fn device_not_found(serial: &str) -> ApiError {
    ApiError::NotFound {
        what: format!("Autopilot device {serial}"),
    }
}

async fn get_device(app: Arc<App>, serial: String) -> Result<Resp, ApiError> {
    let found = blocking({
        let serial = serial.clone();
        move || Ok(DEVICES.get(app.store.records(), &serial_key(&serial))?)
    })
    .await?;
    found
        .map(|d| json(StatusCode::OK, &d))
        .ok_or_else(|| device_not_found(&serial))
}

/// Copies the Autopilot record's group tag to its linked device (and re-applies what depends
/// on it).
fn sync_linked(app: &App, rec: &devices::AutopilotDevice) -> Result<(), ApiError> {
    let Some(id) = &rec.linked_device_id else {
        return Ok(());
    };
    let Some(mut dev) = app.store.get_device(id)? else {
        return Ok(());
    };
    if dev.group_tag == rec.group_tag {
        return Ok(());
    }
    dev.group_tag = rec.group_tag.clone();
    ap::on_device_attributes_changed(app, &mut dev)?;
    app.store.put_device(&dev)?;
    tracing::info!(device_id = %dev.device_id, group_tag = ?dev.group_tag, "linked device's group tag updated");
    // Dynamic groups over `group_tag` and the profiles assigned to them follow.
    crate::groups::on_device_changed(app, &dev.device_id)?;
    Ok(())
}

async fn patch_device(
    app: Arc<App>,
    serial: String,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let patch: DevicePatch = json_body(req).await?;
    if patch.is_empty() {
        return Err(ApiError::BadRequest {
            reason: "give at least one of user, user_friendly_name, device_name, group_tag, linked_device_id".into(),
        });
    }
    let detail = serde_json::json!({
        "user": patch.user, "user_friendly_name": patch.user_friendly_name,
        "device_name": patch.device_name, "group_tag": patch.group_tag,
        "linked_device_id": patch.linked_device_id,
    });
    let relink = patch.linked_device_id.clone();
    let rec = blocking({
        let (app, serial) = (app.clone(), serial.clone());
        move || {
            let s = app.store.records();
            let key = serial_key(&serial);
            let mut rule: Option<FieldError> = None;
            let out = DEVICES.update(s, &key, |cur| {
                rule = None;
                let Some(cur) = cur else { return Ok(None) };
                match patch.clone().apply(&cur) {
                    Ok(n) => Ok(Some(n)),
                    Err(e) => {
                        rule = Some(e);
                        Ok(Some(cur))
                    }
                }
            });
            if let Some(e) = rule {
                return Err(e.into());
            }
            let mut rec = out
                .map_err(ApiError::from)?
                .ok_or_else(|| device_not_found(&serial))?;
            if let Some(target) = relink {
                // An admin's resolution of a link conflict (or a manual link / unlink).
                let actor = super::tokens::current_actor();
                rec = match ap::link::relink(&app, &serial, target.as_deref(), &actor)? {
                    Ok(Some(r)) => r,
                    Ok(None) => return Err(device_not_found(&serial)),
                    Err(reason) => {
                        return Err(ApiError::Invalid {
                            field: "linked_device_id".into(),
                            reason,
                        })
                    }
                };
            }
            sync_linked(&app, &rec)?;
            Ok(rec)
        }
    })
    .await?;
    tracing::info!(serial = %rec.serial, "Autopilot device edited");
    audit(&app, "autopilot.device.update", &rec.serial, detail).await;
    Ok(json(StatusCode::OK, &rec))
}

async fn delete_device(app: Arc<App>, serial: String) -> Result<Resp, ApiError> {
    let gone = blocking({
        let (app, serial) = (app.clone(), serial.clone());
        move || Ok(DEVICES.take(app.store.records(), &serial_key(&serial))?)
    })
    .await?;
    let rec = gone.ok_or_else(|| device_not_found(&serial))?;
    tracing::info!(serial = %rec.serial, "Autopilot device deleted");
    audit(
        &app,
        "autopilot.device.delete",
        &rec.serial,
        serde_json::json!({ "linked_device_id": rec.linked_device_id }),
    )
    .await;
    Ok(no_content())
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
