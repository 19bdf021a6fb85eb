//! Device groups (static and dynamic, [`crate::groups`]) and configuration profiles
//! ([`crate::profiles`]) with their assignments; every profile change reconciles the devices in
//! a background job ([`crate::jobs`]) that the call waits for up to `--job-wait-ms`.

use std::sync::Arc;

use serde::Serialize;

use super::{audit, blocking, Actor, Page, ServiceError};
use crate::app::App;
use crate::groups::{self, Evaluation, Group, GroupPatch, NewGroup, GROUPS};
use crate::jobs::{self, Job, JobKind};
use crate::profiles::{self, reconcile, Profile, ProfileInput, PROFILES};

/// A group with the result of evaluating it.
#[derive(Debug, Serialize)]
pub struct GroupEvaluated {
    /// The group.
    #[serde(flatten)]
    pub group: Group,
    /// Who joined or left.
    pub evaluation: Evaluation,
}

/// A group and the profiles assigned to it.
#[derive(Debug, Serialize)]
pub struct GroupDetail {
    /// The group.
    #[serde(flatten)]
    pub group: Group,
    /// Ids of the profiles assigned to it.
    pub profiles: Vec<String>,
}

/// Creates a group (a dynamic one is evaluated at once).
pub async fn create(
    app: &Arc<App>,
    actor: &Actor,
    ng: NewGroup,
) -> Result<GroupEvaluated, ServiceError> {
    actor.require_admin("POST /api/v1/groups")?;
    let a = app.clone();
    let (g, ev) = blocking(move || Ok(groups::create(&a, ng)?)).await?;
    audit(
        app,
        actor,
        "group.create",
        &g.id,
        serde_json::json!({"name": g.name, "query": g.query, "joined": ev.joined}),
    )
    .await;
    Ok(GroupEvaluated {
        group: g,
        evaluation: ev,
    })
}

/// One page of groups, by id.
pub async fn list(
    app: &Arc<App>,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<Group>, ServiceError> {
    let a = app.clone();
    let (page, next) =
        blocking(move || Ok(GROUPS.page(a.store.records(), cursor.as_deref(), limit)?)).await?;
    Ok(Page {
        items: page.into_iter().map(|(_, g)| g).collect(),
        next,
    })
}

/// A group and its profiles.
pub async fn get(app: &Arc<App>, id: &str) -> Result<GroupDetail, ServiceError> {
    let (app, id) = (app.clone(), id.to_string());
    blocking(move || {
        let g = groups::get(&app, &id)?;
        let profiles: Vec<String> =
            groups::scan_all_pairs(app.store.records(), crate::profiles::GROUP_PROFILES, &id)?
                .into_iter()
                .map(|(p, _)| p)
                .collect();
        Ok(GroupDetail { group: g, profiles })
    })
    .await
}

/// Renames, re-describes or re-queries a group.
pub async fn patch(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    p: GroupPatch,
) -> Result<GroupEvaluated, ServiceError> {
    actor.require_admin(&format!("PATCH /api/v1/groups/{id}"))?;
    if p.name.is_none() && p.description.is_none() && p.query.is_none() {
        return Err(ServiceError::bad("give name, description and/or query"));
    }
    let a = app.clone();
    let (g, ev) = blocking({
        let id = id.to_string();
        move || Ok(groups::patch(&a, &id, p)?)
    })
    .await?;
    audit(
        app,
        actor,
        "group.update",
        id,
        serde_json::json!({"name": g.name, "query": g.query, "joined": ev.joined, "left": ev.left}),
    )
    .await;
    Ok(GroupEvaluated {
        group: g,
        evaluation: ev,
    })
}

/// Deletes a group (its members' profiles from it are removed).
pub async fn delete(app: &Arc<App>, actor: &Actor, id: &str) -> Result<(), ServiceError> {
    actor.require_admin(&format!("DELETE /api/v1/groups/{id}"))?;
    let a = app.clone();
    let ev = blocking({
        let id = id.to_string();
        move || Ok(groups::delete(&a, &id)?)
    })
    .await?;
    audit(
        app,
        actor,
        "group.delete",
        id,
        serde_json::json!({"members": ev.left, "queued": ev.queued}),
    )
    .await;
    Ok(())
}

/// A group member.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    /// The device.
    pub device_id: String,
    /// Member since (Unix seconds).
    pub since: i64,
}

/// One page of a group's members.
pub async fn members(
    app: &Arc<App>,
    id: &str,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<MemberView>, ServiceError> {
    let (app, id) = (app.clone(), id.to_string());
    let (page, next) =
        blocking(move || Ok(groups::members(&app, &id, cursor.as_deref(), limit)?)).await?;
    Ok(Page {
        items: page
            .into_iter()
            .map(|(d, m)| MemberView {
                device_id: d,
                since: m.since,
            })
            .collect(),
        next,
    })
}

/// Adds devices to (or removes them from) a static group.
pub async fn set_members(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    device_ids: Vec<String>,
    add: bool,
) -> Result<Evaluation, ServiceError> {
    actor.require_admin(&format!("POST /api/v1/groups/{id}/members"))?;
    let a = app.clone();
    let ev = blocking({
        let id = id.to_string();
        move || Ok(groups::set_static(&a, &id, &device_ids, add)?)
    })
    .await?;
    audit(
        app,
        actor,
        if add {
            "group.members.add"
        } else {
            "group.members.remove"
        },
        id,
        serde_json::json!({"changed": ev.joined + ev.left, "queued": ev.queued}),
    )
    .await;
    Ok(ev)
}

/// Starts the reconciliation of profile `id` as a background job and waits up to `--job-wait-ms`
/// for it.
pub(crate) async fn reconcile_job(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    reason: &str,
) -> Result<Job, ServiceError> {
    let kind = JobKind::ReconcileProfile {
        profile_id: id.to_string(),
        reason: reason.to_string(),
    };
    Ok(jobs::start_and_wait(app.clone(), kind, actor.name.clone(), app.cfg.job_wait).await?)
}

/// Creates a profile.
pub async fn create_profile(
    app: &Arc<App>,
    actor: &Actor,
    p: ProfileInput,
) -> Result<Profile, ServiceError> {
    actor.require_admin("POST /api/v1/profiles")?;
    let a = app.clone();
    let prof = blocking(move || Ok(profiles::create(&a, p)?)).await?;
    audit(
        app,
        actor,
        "profile.create",
        &prof.id,
        serde_json::json!({"name": prof.name, "scope": prof.scope, "operations": prof.operations.len()}),
    )
    .await;
    Ok(prof)
}

/// One page of profiles, by id.
pub async fn list_profiles(
    app: &Arc<App>,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<Profile>, ServiceError> {
    let a = app.clone();
    let (page, next) =
        blocking(move || Ok(PROFILES.page(a.store.records(), cursor.as_deref(), limit)?)).await?;
    Ok(Page {
        items: page.into_iter().map(|(_, p)| p).collect(),
        next,
    })
}

/// A profile and the groups it is assigned to.
#[derive(Debug, Serialize)]
pub struct ProfileDetail {
    /// The profile.
    #[serde(flatten)]
    pub profile: Profile,
    /// Group ids.
    pub assignments: Vec<String>,
}

/// A profile and its assignments.
pub async fn get_profile(app: &Arc<App>, id: &str) -> Result<ProfileDetail, ServiceError> {
    let (app, id) = (app.clone(), id.to_string());
    blocking(move || {
        let p = profiles::get(&app, &id)?;
        let assignments = profiles::assignments(&app, &id)?;
        Ok(ProfileDetail {
            profile: p,
            assignments,
        })
    })
    .await
}

/// A profile after a change, and the reconciliation job as far as it got.
#[derive(Debug)]
pub struct ProfileChanged {
    /// The profile.
    pub profile: Profile,
    /// The job.
    pub job: Job,
}

/// Updates a profile (`input`), or re-pushes it unchanged (`None`: same operations, new
/// version); the devices are reconciled.
pub async fn update_profile(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    input: Option<ProfileInput>,
) -> Result<ProfileChanged, ServiceError> {
    let push = input.is_none();
    actor.require_admin(&if push {
        format!("POST /api/v1/profiles/{id}/push")
    } else {
        format!("PATCH /api/v1/profiles/{id}")
    })?;
    let a = app.clone();
    let prof = blocking({
        let id = id.to_string();
        move || {
            Ok(profiles::update_record(
                &a,
                &id,
                input.unwrap_or_default(),
                push,
            )?)
        }
    })
    .await?;
    let job = reconcile_job(app, actor, id, if push { "push" } else { "update" }).await?;
    audit(
        app,
        actor,
        if push {
            "profile.push"
        } else {
            "profile.update"
        },
        id,
        serde_json::json!({"version": prof.version, "job_id": job.id, "devices": job.done, "queued": job.queued}),
    )
    .await;
    Ok(ProfileChanged { profile: prof, job })
}

/// Deletes a profile (devices get its settings deleted); the job as far as it got.
pub async fn delete_profile(app: &Arc<App>, actor: &Actor, id: &str) -> Result<Job, ServiceError> {
    actor.require_admin(&format!("DELETE /api/v1/profiles/{id}"))?;
    let a = app.clone();
    blocking({
        let id = id.to_string();
        move || Ok(profiles::delete_record(&a, &id)?)
    })
    .await?;
    let job = reconcile_job(app, actor, id, "delete").await?;
    audit(
        app,
        actor,
        "profile.delete",
        id,
        serde_json::json!({"job_id": job.id, "devices": job.done, "queued": job.queued}),
    )
    .await;
    Ok(job)
}

/// Assigns a profile to a group; `(created, job)` (`false`: it was assigned already).
pub async fn assign(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    group_id: &str,
) -> Result<(bool, Job), ServiceError> {
    actor.require_admin(&format!("POST /api/v1/profiles/{id}/assignments"))?;
    let a = app.clone();
    let created = blocking({
        let (id, gid) = (id.to_string(), group_id.to_string());
        move || Ok(profiles::assign_record(&a, &id, &gid)?)
    })
    .await?;
    let job = reconcile_job(app, actor, id, "assign").await?;
    if created {
        audit(
            app,
            actor,
            "profile.assign",
            id,
            serde_json::json!({"group_id": group_id, "job_id": job.id, "devices": job.done, "queued": job.queued}),
        )
        .await;
    }
    Ok((created, job))
}

/// Removes a profile's assignment to a group.
pub async fn unassign(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    group_id: &str,
) -> Result<Job, ServiceError> {
    actor.require_admin(&format!(
        "DELETE /api/v1/profiles/{id}/assignments/{group_id}"
    ))?;
    let a = app.clone();
    blocking({
        let (id, gid) = (id.to_string(), group_id.to_string());
        move || Ok(profiles::unassign_record(&a, &id, &gid)?)
    })
    .await?;
    let job = reconcile_job(app, actor, id, "unassign").await?;
    audit(
        app,
        actor,
        "profile.unassign",
        id,
        serde_json::json!({"group_id": group_id, "job_id": job.id, "devices": job.done, "queued": job.queued}),
    )
    .await;
    Ok(job)
}

/// One page of a profile's per-device status.
pub async fn profile_status(
    app: &Arc<App>,
    id: &str,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<reconcile::Status>, ServiceError> {
    let (app, id) = (app.clone(), id.to_string());
    let (items, next) = blocking(move || {
        profiles::get(&app, &id)?;
        Ok(reconcile::status_page(&app, &id, cursor.as_deref(), limit)?)
    })
    .await?;
    Ok(Page { items, next })
}

/// How many devices a dynamic-group query matches now, or where it is wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// The query parses.
    pub ok: bool,
    /// Matching devices among those read.
    pub matching: usize,
    /// Devices read.
    pub scanned: usize,
    /// Not every device was read ([`super::devices::SCAN_BUDGET`]).
    pub partial: bool,
    /// The error, when it does not parse.
    pub error: Option<String>,
    /// Its 1-based column.
    pub column: Option<usize>,
}

/// Parses `query` and counts the devices it matches (nothing is stored).
pub async fn preview(app: &Arc<App>, query: &str) -> Result<Preview, ServiceError> {
    let expr = match crate::groups::query::parse(query) {
        Ok(e) => e,
        Err(e) => {
            return Ok(Preview {
                ok: false,
                matching: 0,
                scanned: 0,
                partial: false,
                error: Some(e.message.clone()),
                column: Some(e.column),
            })
        }
    };
    let app = app.clone();
    blocking(move || {
        let (mut matching, mut scanned) = (0, 0);
        let mut after: Option<String> = None;
        loop {
            let page = app.store.list_devices(after.as_deref(), 1000)?;
            let Some(last) = page.last() else { break };
            after = Some(last.device_id.clone());
            for d in &page {
                scanned += 1;
                matching += usize::from(expr.matches(d));
            }
            if scanned >= super::devices::SCAN_BUDGET {
                return Ok(Preview {
                    ok: true,
                    matching,
                    scanned,
                    partial: true,
                    error: None,
                    column: None,
                });
            }
        }
        Ok(Preview {
            ok: true,
            matching,
            scanned,
            partial: false,
            error: None,
            column: None,
        })
    })
    .await
}
