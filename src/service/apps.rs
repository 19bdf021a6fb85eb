//! The app catalog ([`crate::apps`]): upload or register packages, assign them to groups
//! (reconciled in background jobs like profiles: an assignment is a managed profile), and the
//! per-device install state.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{audit, blocking, Actor, Page, ServiceError};
use crate::app::App;
use crate::apps::deliver::{self, Assignment, Intent};
use crate::apps::state::{self, DeviceAppState};
use crate::apps::{self, AppRecord, ExternalApp, Upload, UploadError, UploadMeta, APPS};
use crate::groups::GroupError;
use crate::jobs::Job;
use crate::profiles::Scope;

/// The input fields of an app whose rules name them first in their messages.
const APP_FIELDS: &[&str] = &[
    "name",
    "url",
    "sha256",
    "product_code",
    "product_version",
    "package_family_name",
    "package_name",
    "publisher",
    "command_line",
    "timeout_minutes",
    "retry_count",
    "retry_interval_minutes",
];
/// The input fields of an ESP whose rules name them first in their messages.
const ESP_FIELDS: &[&str] = &["name", "timeout_minutes", "custom_error_text"];

/// A refused input as the service says it, naming the field when the rule's message starts
/// with one of `fields` (the API answers `{"field"}`, the console shows it against the field).
fn fielded(e: GroupError, fields: &[&str]) -> ServiceError {
    match e {
        GroupError::Invalid(reason) => match reason.split_once(' ') {
            Some((f, _)) if fields.contains(&f) => ServiceError::Invalid {
                field: f.to_string(),
                reason,
            },
            _ => ServiceError::BadRequest { reason },
        },
        e => e.into(),
    }
}

/// An app and its assignments.
#[derive(Debug, Serialize)]
pub struct AppDetail {
    /// The app.
    #[serde(flatten)]
    pub app: AppRecord,
    /// Its assignments.
    pub assignments: Vec<Assignment>,
}

/// An assignment as the admin gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignInput {
    /// The device group.
    pub group_id: String,
    /// `device` (default) or `user`.
    #[serde(default)]
    pub scope: Scope,
    /// `required` (default) or `uninstall`.
    #[serde(default)]
    pub intent: Intent,
}

/// A change and the reconciliation jobs it started (as far as they got).
#[derive(Debug)]
pub struct Changed<T> {
    /// The result.
    pub value: T,
    /// One job per managed profile reconciled.
    pub jobs: Vec<Job>,
}

/// Why an upload failed, for the adapter's wire map.
#[derive(Debug, thiserror::Error)]
pub enum UploadFailure {
    /// Larger than `--app-max-mb` (413).
    #[error("package larger than {0} bytes")]
    TooLarge(u64),
    /// Anything else.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<UploadError> for UploadFailure {
    fn from(e: UploadError) -> UploadFailure {
        match e {
            UploadError::TooLarge(n) => UploadFailure::TooLarge(n),
            UploadError::Quota(reason) => UploadFailure::Service(ServiceError::ConflictState {
                reason: format!("app storage quota exceeded (--app-quota-mb): {reason}"),
            }),
            UploadError::Other(g) => UploadFailure::Service(g.into()),
        }
    }
}

/// An upload in progress: feed it the body with [`Uploading::write`], then
/// [`Uploading::finish`]; dropped without `finish`, call [`Uploading::abort`].
pub struct Uploading {
    app: Arc<App>,
    up: Option<Upload>,
    written: bool,
}

/// Starts an upload of an MSI or MSIX/APPX package (`replace`: new content for that app, an
/// upgrade).
pub async fn begin_upload(
    app: &Arc<App>,
    actor: &Actor,
    replace: Option<&str>,
) -> Result<Uploading, UploadFailure> {
    match replace {
        Some(id) => actor.require_admin(&format!("PUT /api/v1/apps/{id}/content"))?,
        None => actor.require_admin("POST /api/v1/apps")?,
    }
    let a = app.clone();
    let replace = replace.map(str::to_string);
    let up = tokio::task::spawn_blocking(move || {
        if let Some(id) = &replace {
            // An unknown app is a 404 before its body is read.
            apps::get(&a, id)?;
        }
        Upload::begin(&a)
    })
    .await
    .map_err(|e| ServiceError::Internal {
        reason: e.to_string(),
    })??;
    Ok(Uploading {
        app: app.clone(),
        up: Some(up),
        written: false,
    })
}

impl Uploading {
    /// Takes the next bytes of the body (stores each full chunk).
    pub async fn write(&mut self, data: &[u8]) -> Result<(), UploadFailure> {
        let Some(up) = self.up.as_mut() else {
            return Ok(());
        };
        let chunks = up.take(data)?;
        if chunks.is_empty() {
            return Ok(());
        }
        self.written = true;
        let a = self.app.clone();
        blocking(move || Ok(apps::content::put_chunks(a.store.records(), chunks)?)).await?;
        Ok(())
    }

    /// Deletes what was stored so far.
    pub async fn abort(mut self) {
        if let Some(up) = self.up.take() {
            let cid = up.writer.content_id.clone();
            if self.written {
                let a = self.app.clone();
                let r = blocking(move || Ok(apps::content::delete(a.store.records(), &cid)?)).await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "deleting an aborted upload failed");
                }
            }
        }
    }

    /// Stores the rest, reads the package's identity and commits the app (or the new content of
    /// `replace`).
    pub async fn finish(
        mut self,
        actor: &Actor,
        meta: UploadMeta,
        replace: Option<String>,
    ) -> Result<Changed<AppRecord>, UploadFailure> {
        let Some(up) = self.up.take() else {
            return Err(ServiceError::bad("upload already finished").into());
        };
        let (writer, last, sha256, size) = up.end();
        if size == 0 {
            return Err(ServiceError::bad("empty body: send the MSI or MSIX/APPX file").into());
        }
        let a = self.app.clone();
        let cid = writer.content_id.clone();
        let r = blocking({
            let replace = replace.clone();
            move || {
                if let Err(e) =
                    apps::content::put_chunks(a.store.records(), last.into_iter().collect())
                {
                    let _ = apps::content::delete(a.store.records(), &cid);
                    return Err(e.into());
                }
                let (rec, old) =
                    apps::commit_upload(&a, &cid, size, sha256, meta, replace.as_deref())
                        .map_err(|e| fielded(e, APP_FIELDS))?;
                let touched = if old.is_some() {
                    deliver::refresh(&a, &rec)?
                } else {
                    Vec::new()
                };
                Ok((rec, old, touched))
            }
        })
        .await?;
        let (rec, old, touched) = r;
        let jobs = reconcile(&self.app, actor, &touched, "app.upgrade").await?;
        let app = &self.app;
        match old {
            None => {
                audit(app, actor, "app.create", &rec.id, serde_json::json!({"name": rec.name, "kind": rec.kind, "product_code": rec.product_code, "package_family_name": rec.package_family_name, "version": rec.product_version, "size": rec.size, "sha256": rec.sha256})).await
            }
            Some(o) => {
                audit(app, actor, "app.upgrade", &rec.id, serde_json::json!({"from": o.product_version, "to": rec.product_version, "size": rec.size, "sha256": rec.sha256, "jobs": jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>()})).await
            }
        }
        Ok(Changed { value: rec, jobs })
    }
}

async fn reconcile(
    app: &Arc<App>,
    actor: &Actor,
    profiles: &[String],
    reason: &str,
) -> Result<Vec<Job>, ServiceError> {
    let mut jobs = Vec::new();
    for pid in profiles {
        jobs.push(super::groups::reconcile_job(app, actor, pid, reason).await?);
    }
    Ok(jobs)
}

/// Registers an app by URL and SHA-256.
pub async fn register(
    app: &Arc<App>,
    actor: &Actor,
    e: ExternalApp,
) -> Result<AppRecord, ServiceError> {
    actor.require_admin("POST /api/v1/apps")?;
    let a = app.clone();
    let rec =
        blocking(move || apps::create_external(&a, e).map_err(|e| fielded(e, APP_FIELDS))).await?;
    audit(
        app,
        actor,
        "app.create",
        &rec.id,
        serde_json::json!({"name": rec.name, "kind": rec.kind, "url": rec.url, "sha256": rec.sha256}),
    )
    .await;
    Ok(rec)
}

/// One page of apps, by id.
pub async fn list(
    app: &Arc<App>,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<AppRecord>, ServiceError> {
    let a = app.clone();
    let (page, next) =
        blocking(move || Ok(APPS.page(a.store.records(), cursor.as_deref(), limit)?)).await?;
    Ok(Page {
        items: page.into_iter().map(|(_, p)| p).collect(),
        next,
    })
}

/// An app and its assignments.
pub async fn get(app: &Arc<App>, id: &str) -> Result<AppDetail, ServiceError> {
    let (a, id) = (app.clone(), id.to_string());
    blocking(move || {
        let rec = apps::get(&a, &id)?;
        let assignments = deliver::assignments(&a, &id)?;
        Ok(AppDetail {
            app: rec,
            assignments,
        })
    })
    .await
}

/// Deletes an app: its assignments go (devices get the app's node deleted: uninstalled), then
/// the record and its content.
pub async fn delete(app: &Arc<App>, actor: &Actor, id: &str) -> Result<Vec<Job>, ServiceError> {
    actor.require_admin(&format!("DELETE /api/v1/apps/{id}"))?;
    let a = app.clone();
    let touched = blocking({
        let id = id.to_string();
        move || {
            apps::get(&a, &id)?;
            let t = deliver::remove_profiles(&a, &id)?;
            apps::delete_record(&a, &id)?;
            Ok(t)
        }
    })
    .await?;
    let jobs = reconcile(app, actor, &touched, "app.delete").await?;
    audit(
        app,
        actor,
        "app.delete",
        id,
        serde_json::json!({"jobs": jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>()}),
    )
    .await;
    Ok(jobs)
}

/// Assigns an app to a group; `created` is `false` when that assignment existed.
pub async fn assign(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    input: AssignInput,
) -> Result<Changed<bool>, ServiceError> {
    actor.require_admin(&format!("POST /api/v1/apps/{id}/assignments"))?;
    let a = app.clone();
    let (created, touched) = blocking({
        let (id, input) = (id.to_string(), input.clone());
        move || {
            let rec = apps::get(&a, &id)?;
            Ok(deliver::assign(
                &a,
                &rec,
                &input.group_id,
                input.scope,
                input.intent,
            )?)
        }
    })
    .await?;
    let jobs = reconcile(app, actor, &touched, "app.assign").await?;
    audit(
        app,
        actor,
        "app.assign",
        id,
        serde_json::json!({"group_id": input.group_id, "scope": input.scope, "intent": input.intent, "created": created, "jobs": jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>()}),
    )
    .await;
    Ok(Changed {
        value: created,
        jobs,
    })
}

/// Removes an app's assignments to a group (devices that no longer get it uninstall it).
pub async fn unassign(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    group_id: &str,
) -> Result<Vec<Job>, ServiceError> {
    actor.require_admin(&format!("DELETE /api/v1/apps/{id}/assignments/{group_id}"))?;
    let a = app.clone();
    let touched = blocking({
        let (id, gid) = (id.to_string(), group_id.to_string());
        move || {
            apps::get(&a, &id)?;
            Ok(deliver::unassign(&a, &id, &gid)?)
        }
    })
    .await?;
    let jobs = reconcile(app, actor, &touched, "app.unassign").await?;
    audit(
        app,
        actor,
        "app.unassign",
        id,
        serde_json::json!({"group_id": group_id, "jobs": jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>()}),
    )
    .await;
    Ok(jobs)
}

/// One page of an app's per-device state.
pub async fn devices(
    app: &Arc<App>,
    id: &str,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<DeviceAppState>, ServiceError> {
    let (a, id) = (app.clone(), id.to_string());
    let (items, next) = blocking(move || {
        apps::get(&a, &id)?;
        Ok(state::app_states_page(&a, &id, cursor.as_deref(), limit)?)
    })
    .await?;
    Ok(Page { items, next })
}

/// How many devices an app is in each state, counting at most `max` (then `complete` is false).
#[derive(Debug, Clone, Default, Serialize)]
pub struct StateCounts {
    /// `(state, devices)`, in the order of [`state::AppState`].
    pub counts: Vec<(state::AppState, usize)>,
    /// Whether every deployment was counted.
    pub complete: bool,
}

/// The per-state device counts of an app (at most `max` deployments read).
pub async fn state_counts(
    app: &Arc<App>,
    id: &str,
    max: usize,
) -> Result<StateCounts, ServiceError> {
    let (a, id) = (app.clone(), id.to_string());
    let max = max.max(1);
    blocking(move || {
        let mut seen: Vec<(state::AppState, usize)> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut read = 0;
        loop {
            let want = (max - read).min(super::DEFAULT_PAGE);
            let (items, next) = state::app_states_page(&a, &id, cursor.as_deref(), want)?;
            read += items.len();
            for s in items {
                match seen.iter_mut().find(|(st, _)| *st == s.state) {
                    Some((_, n)) => *n += 1,
                    None => seen.push((s.state, 1)),
                }
            }
            match next {
                Some(n) if read < max => cursor = Some(n),
                Some(_) => {
                    seen.sort_by_key(|(st, _)| *st as u8);
                    return Ok(StateCounts {
                        counts: seen,
                        complete: false,
                    });
                }
                None => {
                    seen.sort_by_key(|(st, _)| *st as u8);
                    return Ok(StateCounts {
                        counts: seen,
                        complete: true,
                    });
                }
            }
        }
    })
    .await
}

/// Every app's state on one device.
pub async fn device_apps(
    app: &Arc<App>,
    device_id: &str,
) -> Result<Vec<DeviceAppState>, ServiceError> {
    let (a, id) = (app.clone(), device_id.to_string());
    blocking(move || {
        if a.store.get_device(&id)?.is_none() {
            return Err(ServiceError::not_found(format!("device {id}")));
        }
        Ok(state::device_states(&a, &id)?)
    })
    .await
}

/// An ESP and the groups it is assigned to.
#[derive(Debug, Serialize)]
pub struct EspDetail {
    /// The ESP.
    #[serde(flatten)]
    pub esp: crate::apps::esp::Esp,
    /// Group ids.
    pub groups: Vec<String>,
}

/// Creates an ESP configuration.
pub async fn create_esp(
    app: &Arc<App>,
    actor: &Actor,
    i: crate::apps::esp::EspInput,
) -> Result<crate::apps::esp::Esp, ServiceError> {
    actor.require_admin("POST /api/v1/esp")?;
    let a = app.clone();
    let e = blocking(move || crate::apps::esp::create(&a, i).map_err(|e| fielded(e, ESP_FIELDS)))
        .await?;
    audit(
        app,
        actor,
        "esp.create",
        &e.id,
        serde_json::json!({"name": e.name, "apps": e.apps, "profiles": e.profiles, "timeout_minutes": e.timeout_minutes}),
    )
    .await;
    Ok(e)
}

/// Replaces an ESP's configuration (the rules of [`create_esp`]; group assignments stay).
pub async fn update_esp(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    i: crate::apps::esp::EspInput,
) -> Result<crate::apps::esp::Esp, ServiceError> {
    actor.require_admin(&format!("PUT /api/v1/esp/{id}"))?;
    let (a, eid) = (app.clone(), id.to_string());
    let e =
        blocking(move || crate::apps::esp::update(&a, &eid, i).map_err(|e| fielded(e, ESP_FIELDS)))
            .await?;
    audit(
        app,
        actor,
        "esp.update",
        &e.id,
        serde_json::json!({"name": e.name, "apps": e.apps, "timeout_minutes": e.timeout_minutes, "block": e.block_value(), "autopilot_profiles": e.autopilot_profiles}),
    )
    .await;
    Ok(e)
}

/// One page of ESP configurations.
pub async fn list_esp(
    app: &Arc<App>,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<crate::apps::esp::Esp>, ServiceError> {
    let a = app.clone();
    let (page, next) = blocking(move || {
        Ok(crate::apps::esp::ESPS.page(a.store.records(), cursor.as_deref(), limit)?)
    })
    .await?;
    Ok(Page {
        items: page.into_iter().map(|(_, e)| e).collect(),
        next,
    })
}

/// An ESP and its groups.
pub async fn get_esp(app: &Arc<App>, id: &str) -> Result<EspDetail, ServiceError> {
    let (a, id) = (app.clone(), id.to_string());
    blocking(move || {
        Ok(EspDetail {
            esp: crate::apps::esp::get(&a, &id)?,
            groups: crate::apps::esp::groups(&a, &id)?,
        })
    })
    .await
}

/// Deletes an ESP configuration (devices already tracked finish as started).
pub async fn delete_esp(app: &Arc<App>, actor: &Actor, id: &str) -> Result<(), ServiceError> {
    actor.require_admin(&format!("DELETE /api/v1/esp/{id}"))?;
    let (a, i) = (app.clone(), id.to_string());
    blocking(move || Ok(crate::apps::esp::delete(&a, &i)?)).await?;
    audit(app, actor, "esp.delete", id, serde_json::json!({})).await;
    Ok(())
}

/// Assigns an ESP to a group (`false`: it was).
pub async fn assign_esp(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    group_id: &str,
) -> Result<bool, ServiceError> {
    actor.require_admin(&format!("POST /api/v1/esp/{id}/assignments"))?;
    let (a, i, g) = (app.clone(), id.to_string(), group_id.to_string());
    let created = blocking(move || Ok(crate::apps::esp::assign(&a, &i, &g)?)).await?;
    audit(
        app,
        actor,
        "esp.assign",
        id,
        serde_json::json!({"group_id": group_id, "created": created}),
    )
    .await;
    Ok(created)
}

/// Removes an ESP's assignment to a group.
pub async fn unassign_esp(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    group_id: &str,
) -> Result<(), ServiceError> {
    actor.require_admin(&format!("DELETE /api/v1/esp/{id}/assignments/{group_id}"))?;
    let (a, i, g) = (app.clone(), id.to_string(), group_id.to_string());
    blocking(move || Ok(crate::apps::esp::unassign(&a, &i, &g)?)).await?;
    audit(
        app,
        actor,
        "esp.unassign",
        id,
        serde_json::json!({"group_id": group_id}),
    )
    .await;
    Ok(())
}

/// A device's ESP progress (404 when it has none).
pub async fn device_esp(
    app: &Arc<App>,
    device_id: &str,
) -> Result<crate::apps::esp::Progress, ServiceError> {
    let (a, id) = (app.clone(), device_id.to_string());
    blocking(move || {
        if a.store.get_device(&id)?.is_none() {
            return Err(ServiceError::not_found(format!("device {id}")));
        }
        crate::apps::esp::progress(&a, &id)?
            .ok_or_else(|| ServiceError::not_found(format!("ESP tracking of device {id}")))
    })
    .await
}
