//! Windows Autopilot: profiles (the seed's rules checked by [`crate::autopilot::profile`]) and
//! their export, registered devices (hardware-hash CSV import, list, edit, delete) and the
//! global settings.

use std::sync::Arc;

use super::{audit, blocking, Actor, ServiceError};
use crate::app::App;
use crate::autopilot::csv::{self, serial_key};
use crate::autopilot::devices::{
    self, AutopilotDevice, DevicePatch, Filter, ImportReport, DEVICES,
};
use crate::autopilot::export::{self, Tenant};
use crate::autopilot::profile::{self, FieldError, Profile, ProfileInput};
use crate::autopilot::profiles::{self, ProfileStoreError};
use crate::autopilot::{self as ap, Settings};

use super::devices::SCAN_BUDGET;

impl From<FieldError> for ServiceError {
    fn from(e: FieldError) -> ServiceError {
        ServiceError::Invalid {
            field: e.field.to_string(),
            reason: format!("{}: {}", e.field, e.message),
        }
    }
}

impl From<ProfileStoreError> for ServiceError {
    fn from(e: ProfileStoreError) -> ServiceError {
        match e {
            ProfileStoreError::NotFound(id) => ServiceError::NotFound {
                what: format!("Autopilot profile {id}"),
            },
            ProfileStoreError::Store(e) => e.into(),
            e @ (ProfileStoreError::NameTaken(_) | ProfileStoreError::AllGroupsTaken(_)) => {
                ServiceError::Refused {
                    reason: e.to_string(),
                }
            }
        }
    }
}

impl From<ap::AssignmentError> for ServiceError {
    fn from(e: ap::AssignmentError) -> ServiceError {
        ServiceError::Refused {
            reason: e.to_string(),
        }
    }
}

/// Decodes a profile request; a wrong value names its field (`{"field": "device_type"}`).
pub fn profile_input(v: serde_json::Value) -> Result<ProfileInput, ServiceError> {
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
                Some((field, e)) => ServiceError::Invalid {
                    reason: format!("{field}: {e}"),
                    field,
                },
                None => ServiceError::BadRequest {
                    reason: format!("invalid profile: {e}"),
                },
            })
        }
    }
}

/// The error of an unknown profile.
pub fn profile_not_found(p: &str) -> ServiceError {
    ServiceError::NotFound {
        what: format!("Autopilot profile {p}"),
    }
}

/// Re-applies Autopilot-derived state (TenantLockdown) to every linked, enrolled device;
/// returns how many got a command queued.
fn reapply_linked(app: &App) -> Result<usize, ServiceError> {
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
fn check_groups(app: &App, p: &profile::Profile) -> Result<(), ServiceError> {
    for gid in &p.groups {
        let g = match crate::groups::get(app, gid) {
            Ok(g) => g,
            Err(crate::groups::GroupError::NotFound(_)) => {
                return Err(ServiceError::Invalid {
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

/// Copies the Autopilot record's group tag to its linked device (and re-applies what depends
/// on it).
pub(crate) fn sync_linked(app: &App, rec: &devices::AutopilotDevice) -> Result<(), ServiceError> {
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

/// Creates a profile (rules checked; groups must exist and fit the device type).
pub async fn create_profile(
    app: &Arc<App>,
    actor: &Actor,
    input: ProfileInput,
) -> Result<Profile, ServiceError> {
    actor.require_admin("POST /api/v1/autopilot/profiles")?;
    let p = blocking({
        let app = app.clone();
        move || {
            let now = app.clock.now_unix();
            let p = input.validate(&profile::new_id(), now, now)?;
            check_groups(&app, &p)?;
            profiles::create(app.store.records(), &p)?;
            crate::tenant::state::on_profile_changed(app.store.records(), &p.id, &p.name, now)?;
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
    app.tenant.kick.notify_one();
    tracing::info!(profile_id = %p.id, name = %p.name, "Autopilot profile created");
    audit(
        app,
        actor,
        "autopilot.profile.create",
        &p.id,
        serde_json::json!({ "name": p.name }),
    )
    .await;
    Ok(p)
}

/// Every profile, by name.
pub async fn list_profiles(app: &Arc<App>) -> Result<Vec<Profile>, ServiceError> {
    let app = app.clone();
    blocking(move || Ok(profiles::all(app.store.records())?)).await
}

/// A profile by id or name.
pub async fn get_profile(app: &Arc<App>, p: &str) -> Result<Profile, ServiceError> {
    let found = blocking({
        let (app, p) = (app.clone(), p.to_string());
        move || Ok(profiles::find(app.store.records(), &p)?)
    })
    .await?;
    found.ok_or_else(|| profile_not_found(p))
}

/// Replaces every setting of a profile (rules checked as on create).
pub async fn replace_profile(
    app: &Arc<App>,
    actor: &Actor,
    p: &str,
    input: ProfileInput,
) -> Result<Profile, ServiceError> {
    actor.require_admin(&format!("PUT /api/v1/autopilot/profiles/{p}"))?;
    let new = blocking({
        let (app, p) = (app.clone(), p.to_string());
        move || {
            let s = app.store.records();
            let cur = profiles::find(s, &p)?.ok_or_else(|| profile_not_found(&p))?;
            let now = app.clock.now_unix();
            // Validate once against the current record's id and creation time.
            let checked = input.validate(&cur.id, cur.created_at, now)?;
            check_groups(&app, &checked)?;
            let (_, new) = profiles::replace(s, &cur.id, |_| checked.clone())?;
            crate::tenant::state::on_profile_changed(s, &new.id, &new.name, now)?;
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
    app.tenant.kick.notify_one();
    tracing::info!(profile_id = %new.id, name = %new.name, "Autopilot profile replaced");
    audit(
        app,
        actor,
        "autopilot.profile.update",
        &new.id,
        serde_json::json!({ "name": new.name }),
    )
    .await;
    Ok(new)
}

/// Deletes a profile.
pub async fn delete_profile(app: &Arc<App>, actor: &Actor, p: &str) -> Result<(), ServiceError> {
    actor.require_admin(&format!("DELETE /api/v1/autopilot/profiles/{p}"))?;
    let gone = blocking({
        let (app, p) = (app.clone(), p.to_string());
        move || {
            let s = app.store.records();
            let cur = profiles::find(s, &p)?.ok_or_else(|| profile_not_found(&p))?;
            let gone = profiles::delete(s, &cur.id)?.ok_or_else(|| profile_not_found(&p))?;
            crate::tenant::state::on_profile_deleted(s, &gone.id, app.clock.now_unix())?;
            Ok(gone)
        }
    })
    .await?;
    app.tenant.kick.notify_one();
    tracing::info!(profile_id = %gone.id, name = %gone.name, "Autopilot profile deleted");
    audit(
        app,
        actor,
        "autopilot.profile.delete",
        &gone.id,
        serde_json::json!({ "name": gone.name }),
    )
    .await;
    Ok(())
}

/// The profile as `AutopilotConfigurationFile.json` (needs `--tenant-id`/`--tenant-domain`).
pub async fn export_profile(app: &Arc<App>, p: &str) -> Result<String, ServiceError> {
    // An unknown profile is 404 whatever the configuration.
    let profile = get_profile(app, p).await?;
    let tenant = match (&app.cfg.tenant_id, &app.cfg.tenant_domain) {
        (Some(id), Some(domain)) => Tenant {
            id: id.clone(),
            domain: domain.clone(),
        },
        _ => {
            return Err(ServiceError::Refused {
                reason: "exporting an Autopilot configuration file needs the Entra tenant: start \
                         the server with --tenant-id and --tenant-domain (WINMDM_TENANT_ID, \
                         WINMDM_TENANT_DOMAIN)"
                    .into(),
            })
        }
    };
    Ok(export::write(&profile, &tenant))
}

/// The global settings.
pub async fn settings(app: &Arc<App>) -> Result<Settings, ServiceError> {
    let app = app.clone();
    blocking(move || Ok(ap::settings(app.store.records())?)).await
}

/// Sets the global settings; returns how many linked devices got TenantLockdown queued.
pub async fn put_settings(
    app: &Arc<App>,
    actor: &Actor,
    v: Settings,
) -> Result<usize, ServiceError> {
    actor.require_admin("PUT /api/v1/autopilot/settings")?;
    let on = v.tenant_lockdown;
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
    tracing::info!(tenant_lockdown = on, queued, "Autopilot settings changed");
    audit(
        app,
        actor,
        "autopilot.settings",
        "settings",
        serde_json::json!({ "tenant_lockdown": on, "queued": queued }),
    )
    .await;
    Ok(queued)
}

/// Imports a hardware-hash CSV (UTF-8 or UTF-16): rows imported, and each refused row with its
/// error; an unreadable file is a [`ServiceError::BadRequest`].
pub async fn import_devices(
    app: &Arc<App>,
    actor: &Actor,
    body: bytes::Bytes,
) -> Result<ImportReport, ServiceError> {
    actor.require_admin("POST /api/v1/autopilot/devices")?;
    let started = std::time::Instant::now();
    let bytes = body.len();
    let report = blocking({
        let app = app.clone();
        move || {
            let t = std::time::Instant::now();
            let parsed = csv::parse(&body, devices::MAX_IMPORT_ROWS)
                .map_err(|e| ServiceError::bad(e.to_string()))?;
            let parse_ms = t.elapsed().as_millis() as u64;
            let now = app.clock.now_unix();
            let report = devices::import(app.store.records(), parsed, now)?;
            let to_tenant = crate::tenant::state::on_devices_imported(
                app.store.records(),
                &report.serials,
                now,
            )?;
            if to_tenant > 0 {
                tracing::info!(
                    devices = to_tenant,
                    "Autopilot import: queued for the Microsoft tenant"
                );
            }
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
    app.tenant.kick.notify_one();
    tracing::info!(
        bytes,
        imported = report.imported,
        refused = report.errors.len(),
        ms = started.elapsed().as_millis() as u64,
        "Autopilot devices imported"
    );
    audit(
        app,
        actor,
        "autopilot.device.import",
        "devices",
        serde_json::json!({ "imported": report.imported, "refused": report.errors.len() }),
    )
    .await;
    Ok(report)
}

/// One page of registered devices matching `f` (show them as [`crate::autopilot::devices::DeviceSummary`]: without the hash).
pub async fn list_devices(
    app: &Arc<App>,
    cursor: Option<String>,
    limit: usize,
    f: Filter,
) -> Result<super::Page<AutopilotDevice>, ServiceError> {
    let app = app.clone();
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
    Ok(super::Page { items: devs, next })
}

/// The error of an unknown serial.
pub fn device_not_found(serial: &str) -> ServiceError {
    ServiceError::not_found(format!("Autopilot device {serial}"))
}

/// One registered device, with its hardware hash.
pub async fn get_device(app: &Arc<App>, serial: &str) -> Result<AutopilotDevice, ServiceError> {
    let found = blocking({
        let (app, serial) = (app.clone(), serial.to_string());
        move || Ok(DEVICES.get(app.store.records(), &serial_key(&serial))?)
    })
    .await?;
    found.ok_or_else(|| device_not_found(serial))
}

/// Edits user, user-friendly name, device name, group tag or the linked device (rules checked).
pub async fn patch_device(
    app: &Arc<App>,
    actor: &Actor,
    serial: &str,
    patch: DevicePatch,
) -> Result<AutopilotDevice, ServiceError> {
    actor.require_admin(&format!("PATCH /api/v1/autopilot/devices/{serial}"))?;
    if patch.is_empty() {
        return Err(ServiceError::bad(
            "give at least one of user, user_friendly_name, device_name, group_tag, linked_device_id",
        ));
    }
    let detail = serde_json::json!({
        "user": patch.user, "user_friendly_name": patch.user_friendly_name,
        "device_name": patch.device_name, "group_tag": patch.group_tag,
        "linked_device_id": patch.linked_device_id,
    });
    let relink = patch.linked_device_id.clone();
    let actor_name = actor.name.clone();
    let rec = blocking({
        let (app, serial) = (app.clone(), serial.to_string());
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
                .map_err(ServiceError::from)?
                .ok_or_else(|| device_not_found(&serial))?;
            if let Some(target) = relink {
                // An admin's resolution of a link conflict (or a manual link / unlink).
                rec = match ap::link::relink(&app, &serial, target.as_deref(), &actor_name)? {
                    Ok(Some(r)) => r,
                    Ok(None) => return Err(device_not_found(&serial)),
                    Err(reason) => {
                        return Err(ServiceError::Invalid {
                            field: "linked_device_id".into(),
                            reason,
                        })
                    }
                };
            }
            sync_linked(&app, &rec)?;
            crate::tenant::state::on_device_patched(s, &rec.serial, app.clock.now_unix())?;
            Ok(rec)
        }
    })
    .await?;
    app.tenant.kick.notify_one();
    tracing::info!(serial = %rec.serial, "Autopilot device edited");
    audit(app, actor, "autopilot.device.update", &rec.serial, detail).await;
    Ok(rec)
}

/// Deletes a registered device.
pub async fn delete_device(
    app: &Arc<App>,
    actor: &Actor,
    serial: &str,
) -> Result<(), ServiceError> {
    actor.require_admin(&format!("DELETE /api/v1/autopilot/devices/{serial}"))?;
    let gone = blocking({
        let (app, serial) = (app.clone(), serial.to_string());
        move || {
            let s = app.store.records();
            if let Err(reason) = crate::tenant::state::may_delete(s, &serial)? {
                return Err(ServiceError::Refused { reason });
            }
            let gone = DEVICES.take(s, &serial_key(&serial))?;
            if gone.is_some() {
                crate::tenant::state::on_device_deleted(s, &serial, app.clock.now_unix())?;
            }
            Ok(gone)
        }
    })
    .await?;
    app.tenant.kick.notify_one();
    let rec = gone.ok_or_else(|| device_not_found(serial))?;
    tracing::info!(serial = %rec.serial, "Autopilot device deleted");
    audit(
        app,
        actor,
        "autopilot.device.delete",
        &rec.serial,
        serde_json::json!({ "linked_device_id": rec.linked_device_id }),
    )
    .await;
    Ok(())
}
