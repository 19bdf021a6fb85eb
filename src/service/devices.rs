//! Devices: list with filters, the device page's data, delete, hand over, actions, commands,
//! TenantLockdown, per-device profile status; and background jobs.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{audit, blocking, enabled_user, validate_upn, Actor, Page, ServiceError};
use crate::app::App;
use crate::mdm::actions::{self, Action, ActionView};
use crate::mdm::commands::{self, BulkOutcome, NewCommand};
use crate::store::{CommandRecord, CommandState, Device, DeviceFilter, Enqueued};

/// Device records examined per list request at most: a sparse filter returns a short page and a
/// `next` cursor instead of scanning the whole fleet in one request.
pub const SCAN_BUDGET: usize = 20_000;
/// Largest `device_ids` list of one bulk command.
pub const MAX_BULK_DEVICES: usize = 100_000;

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

/// One page of devices matching `f` (and `owner_status` when given), after `cursor`.
pub async fn list(
    app: &Arc<App>,
    cursor: Option<String>,
    limit: usize,
    f: DeviceFilter,
    owner_status: Option<crate::owner::OwnerStatus>,
) -> Result<DevicePage, ServiceError> {
    let app = app.clone();
    blocking(move || {
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
    .await
}

/// Counts of a device's commands by state.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct QueueSummary {
    /// Waiting for the next session.
    pub pending: usize,
    /// Sent, no Status yet.
    pub sent: usize,
    /// Answered 2xx.
    pub done: usize,
    /// Answered 4xx/5xx, an inner command failed, or the server gave up (results lost).
    pub failed: usize,
    /// Answered 214 (cancelled), 215 (not executed) or 216 (rolled back): not applied.
    pub not_applied: usize,
    /// Enqueue time of the oldest `pending` command (Unix seconds), `null` when none waits.
    pub oldest_pending_at: Option<i64>,
}

impl QueueSummary {
    /// Summarises a device's commands (cancelled ones are not counted).
    pub fn of(cmds: &[CommandRecord]) -> QueueSummary {
        let mut q = QueueSummary::default();
        for c in cmds {
            match c.state {
                CommandState::Pending => {
                    q.pending += 1;
                    q.oldest_pending_at = Some(
                        q.oldest_pending_at
                            .map_or(c.created_at, |t| t.min(c.created_at)),
                    );
                }
                CommandState::Sent => q.sent += 1,
                CommandState::Done => q.done += 1,
                CommandState::Failed => q.failed += 1,
                CommandState::CancelledByDevice
                | CommandState::NotExecuted
                | CommandState::RolledBack => q.not_applied += 1,
                CommandState::Cancelled => {}
            }
        }
        q
    }
}

/// The device's current certificate as the CA recorded it.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateView {
    /// Serial (hex).
    pub serial: String,
    /// SHA-1 thumbprint.
    pub thumbprint: String,
    /// Expiry (Unix seconds).
    pub not_after: i64,
    /// Issue time.
    pub issued_at: Option<i64>,
    /// Revocation time.
    pub revoked_at: Option<i64>,
}

/// The device record plus what an admin looks for next.
#[derive(Debug, Serialize)]
pub struct DeviceDetail {
    /// The record.
    #[serde(flatten)]
    pub device: Device,
    /// Its command queue by state.
    pub queue: QueueSummary,
    /// Its current certificate.
    pub certificate: CertificateView,
    /// Whether its owner still exists and is enabled.
    pub owner_status: crate::owner::OwnerStatus,
}

/// A device with its queue summary, certificate and owner status.
pub async fn get(app: &Arc<App>, id: &str) -> Result<DeviceDetail, ServiceError> {
    let (app, id) = (app.clone(), id.to_string());
    blocking(move || {
        let Some(dev) = app.store.get_device(&id)? else {
            return Err(ServiceError::not_found(format!("device {id}")));
        };
        let queue = QueueSummary::of(&app.store.list_commands(&id)?);
        let cert = app.store.get_cert(&dev.cert_serial)?;
        let certificate = CertificateView {
            serial: dev.cert_serial.clone(),
            thumbprint: dev.cert_thumbprint.clone(),
            not_after: dev.cert_not_after,
            issued_at: cert.as_ref().map(|c| c.issued_at),
            revoked_at: cert.and_then(|c| c.revoked_at),
        };
        let owner_status = crate::owner::status(app.store.as_ref(), &dev)?;
        Ok(DeviceDetail {
            device: dev,
            queue,
            certificate,
            owner_status,
        })
    })
    .await
}

/// Deletes a device: queue cancelled, sessions dropped, certificates revoked.
pub async fn delete(app: &Arc<App>, actor: &Actor, id: &str) -> Result<(), ServiceError> {
    actor.require_admin(&format!("DELETE /api/v1/devices/{id}"))?;
    let (a, id) = (app.clone(), id.to_string());
    let serial = blocking({
        let id = id.clone();
        move || {
            let dev = a.store.get_device(&id)?;
            if !a.store.delete_device(&id, a.clock.now_unix())? {
                return Err(ServiceError::not_found(format!("device {id}")));
            }
            let _ = crate::groups::on_device_changed(&a, &id);
            let now = a.clock.now_unix();
            let stopped = crate::trace::Stopped::DeviceDeleted;
            a.tracer.stop(a.store.records(), now, &id, stopped)?;
            Ok(dev.map(|d| d.cert_serial))
        }
    })
    .await?;
    tracing::info!(device_id = %id, "device deleted");
    audit(
        app,
        actor,
        "device.delete",
        &id,
        serde_json::json!({ "cert_serial": serial }),
    )
    .await;
    Ok(())
}

/// Hands the device to another user on purpose ([`crate::owner::transfer`]): its owner, UPN and
/// bulk flag follow the account; a bulk assignment is dropped. The device keeps its certificate,
/// queue and groups; from now on only the new owner may enroll this DeviceID again.
pub async fn transfer(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    upn: &str,
) -> Result<Device, ServiceError> {
    actor.require_admin(&format!("PUT /api/v1/devices/{id}/owner"))?;
    let upn = validate_upn(upn)?;
    let id = id.to_string();
    let (dev, from) = blocking({
        let (app, id) = (app.clone(), id.clone());
        move || {
            let mut dev = app
                .store
                .get_device(&id)?
                .ok_or_else(|| ServiceError::not_found(format!("device {id}")))?;
            let user = enabled_user(&app, &upn, "no device can be handed")?;
            let from = (dev.upn.clone(), dev.owner.clone());
            crate::owner::transfer(&mut dev, &user);
            app.store.put_device(&dev)?;
            let _ = crate::groups::on_device_changed(&app, &id); // groups + profiles (errors logged)
            Ok((dev, from))
        }
    })
    .await?;
    tracing::info!(device_id = %id, from = ?from.0, to = ?dev.upn, "device handed to another user by an admin");
    audit(
        app,
        actor,
        "device.transfer",
        &id,
        serde_json::json!({
            "from_upn": from.0,
            "from_owner": from.1,
            "to_upn": dev.upn,
            "to_owner": dev.owner,
            "by": actor.name,
        }),
    )
    .await;
    Ok(dev)
}

/// Assigns a bulk-enrolled device to a real user (409 for any other device).
pub async fn assign_user(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    upn: &str,
) -> Result<Device, ServiceError> {
    actor.require_admin(&format!("POST /api/v1/devices/{id}/assign-user"))?;
    let upn = validate_upn(upn)?;
    let by = actor.name.clone();
    let id = id.to_string();
    let dev = blocking({
        let (app, id) = (app.clone(), id.clone());
        move || {
            let mut dev = app.store.get_device(&id)?.ok_or_else(|| ServiceError::not_found(format!("device {id}")))?;
            if !dev.bulk {
                return Err(ServiceError::Conflict {
                    what: format!("device {id} was not bulk-enrolled, so it cannot be assigned; an assignment"),
                });
            }
            let Some(user) = app.store.get_user(&upn)? else {
                return Err(ServiceError::not_found(format!("user {upn}")));
            };
            // A bulk device is assigned to its real user; a generic provisioning account is
            // nobody's real user (the seed's "Assign to User" semantics).
            if crate::store::is_bulk_account(&user.upn) {
                tracing::warn!(device_id = %id, %upn, "assignment of a bulk device to a bulk-enrollment account refused");
                return Err(ServiceError::Invalid {
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
        app,
        actor,
        "device.assign_user",
        &id,
        serde_json::json!({ "upn": dev.assigned_user.as_ref().map(|a| &a.upn) }),
    )
    .await;
    Ok(dev)
}

/// A requested device action: its id and whether the same action was already pending.
#[derive(Debug, Clone, Serialize)]
pub struct ActionRequested {
    /// The action's command id.
    pub action_id: String,
    /// Its name.
    pub action: &'static str,
    /// The same action was already queued (nothing new was queued).
    pub existing: bool,
}

/// Requests a device action by name (`wipe`, `wipe-protected`, `reboot`, `retire`, `sync`).
pub async fn request_action(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    action: &str,
) -> Result<ActionRequested, ServiceError> {
    actor.require_admin(&format!("POST /api/v1/devices/{id}/actions"))?;
    let action = Action::parse(action).ok_or_else(|| {
        ServiceError::bad(format!(
            "action must be one of wipe, wipe-protected, reboot, retire, sync; got {action:?}"
        ))
    })?;
    let (a, id) = (app.clone(), id.to_string());
    let out = blocking({
        let id = id.clone();
        move || Ok(actions::request(&a, &id, action)?)
    })
    .await?;
    let (action_id, existing) = match out {
        Enqueued::Created(c) => (c.command_id, false),
        Enqueued::Existing(c) => (c.command_id, true),
    };
    if !existing {
        tracing::info!(device_id = %id, %action_id, action = action.name(), "device action requested");
        audit(
            app,
            actor,
            "device.action",
            &id,
            serde_json::json!({ "action": action.name(), "action_id": action_id }),
        )
        .await;
    }
    Ok(ActionRequested {
        action_id,
        action: action.name(),
        existing,
    })
}

/// The state of a device action.
pub async fn get_action(app: &Arc<App>, id: &str, aid: &str) -> Result<ActionView, ServiceError> {
    let (app, id, aid) = (app.clone(), id.to_string(), aid.to_string());
    let cmd = blocking({
        let (id, aid) = (id.clone(), aid.clone());
        move || {
            if app.store.get_device(&id)?.is_none() && app.store.list_commands(&id)?.is_empty() {
                return Err(ServiceError::not_found(format!("device {id}")));
            }
            Ok(app.store.get_command(&id, &aid)?)
        }
    })
    .await?;
    cmd.as_ref()
        .and_then(ActionView::of)
        .ok_or_else(|| ServiceError::not_found(format!("action {aid}")))
}

/// A queued command as shown (no SyncML body).
#[derive(Debug, Clone, Serialize)]
pub struct CommandView {
    /// Id.
    pub command_id: String,
    /// SyncML verb.
    pub verb: String,
    /// Target LocURI.
    pub target: Option<String>,
    /// State.
    pub state: CommandState,
    /// The device's status code.
    pub status: Option<u16>,
    /// Statuses of inner commands (Atomic/Sequence).
    pub inner: Vec<crate::store::InnerStatus>,
    /// Why it failed, when the server knows.
    pub error: Option<String>,
    /// Results the device returned.
    pub results: Vec<crate::store::ResultItem>,
    /// Results were cut at the bound.
    pub results_truncated: bool,
    /// Enqueue time.
    pub created_at: i64,
    /// Last send.
    pub sent_at: Option<i64>,
    /// Answer time.
    pub completed_at: Option<i64>,
    /// Sends so far.
    pub send_count: u32,
}

impl From<&CommandRecord> for CommandView {
    fn from(c: &CommandRecord) -> Self {
        CommandView {
            command_id: c.command_id.clone(),
            verb: c.verb.clone(),
            target: c.target.clone(),
            state: c.state,
            status: c.status,
            inner: c.inner.clone(),
            error: c.error.clone(),
            results: c.results.clone(),
            results_truncated: c.results_truncated,
            created_at: c.created_at,
            sent_at: c.sent_at,
            completed_at: c.completed_at,
            send_count: c.send_count,
        }
    }
}

/// A queued command: its id and whether that id was queued before.
#[derive(Debug, Clone, Serialize)]
pub struct Queued {
    /// The command id.
    pub command_id: String,
    /// The id existed: nothing new was queued.
    pub existing: bool,
}

impl From<&Enqueued> for Queued {
    fn from(e: &Enqueued) -> Queued {
        match e {
            Enqueued::Created(c) => Queued {
                command_id: c.command_id.clone(),
                existing: false,
            },
            Enqueued::Existing(c) => Queued {
                command_id: c.command_id.clone(),
                existing: true,
            },
        }
    }
}

/// Queues a command for one device.
pub async fn enqueue(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    nc: NewCommand,
) -> Result<Queued, ServiceError> {
    actor.require_admin(&format!("POST /api/v1/devices/{id}/commands"))?;
    let out = blocking({
        let (app, id) = (app.clone(), id.to_string());
        move || Ok(commands::enqueue(&app, &id, nc)?)
    })
    .await?;
    if let Enqueued::Created(c) = &out {
        let detail =
            serde_json::json!({ "command_id": c.command_id, "verb": c.verb, "target": c.target });
        audit(app, actor, "command.enqueue", id, detail).await;
    }
    Ok(Queued::from(&out))
}

/// A device's commands, oldest first (answered ones for `--command-retention`).
pub async fn commands(app: &Arc<App>, id: &str) -> Result<Vec<CommandView>, ServiceError> {
    let (app, id) = (app.clone(), id.to_string());
    let cmds = blocking(move || {
        if app.store.get_device(&id)?.is_none() {
            return Err(ServiceError::not_found(format!("device {id}")));
        }
        Ok(app.store.list_commands(&id)?)
    })
    .await?;
    Ok(cmds.iter().map(CommandView::from).collect())
}

/// Cancels one unanswered command.
pub async fn cancel_command(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    cid: &str,
) -> Result<(), ServiceError> {
    use crate::store::Cancelled;
    actor.require_admin(&format!("DELETE /api/v1/devices/{id}/commands/{cid}"))?;
    let out = blocking({
        let (id, cid, app) = (id.to_string(), cid.to_string(), app.clone());
        move || Ok(app.store.cancel(&id, &cid, app.clock.now_unix())?)
    })
    .await?;
    match out {
        Cancelled::Cancelled => {
            tracing::info!(device_id = %id, command_id = %cid, "command cancelled");
            audit(
                app,
                actor,
                "command.cancel",
                id,
                serde_json::json!({ "command_id": cid }),
            )
            .await;
            Ok(())
        }
        Cancelled::NotFound => Err(ServiceError::not_found(format!("command {cid}"))),
        Cancelled::AlreadyFinal(state) => Err(ServiceError::Conflict {
            what: format!("command {cid} is already {state:?}; a final state"),
        }),
    }
}

/// Cancels every unanswered command of a device; returns how many.
pub async fn clear_commands(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
) -> Result<usize, ServiceError> {
    actor.require_admin(&format!("DELETE /api/v1/devices/{id}/commands"))?;
    let (a, i) = (app.clone(), id.to_string());
    let n = blocking(move || {
        let (app, id) = (a, i);
        if app.store.get_device(&id)?.is_none() {
            return Err(ServiceError::not_found(format!("device {id}")));
        }
        let n = app.store.clear(&id, app.clock.now_unix())?;
        tracing::info!(device_id = %id, cancelled = n, "command queue cleared");
        Ok(n)
    })
    .await?;
    audit(
        app,
        actor,
        "command.clear",
        id,
        serde_json::json!({ "cancelled": n }),
    )
    .await;
    Ok(n)
}

/// Queues TenantLockdown (`RequireNetworkInOOBE`) for a device.
pub async fn tenant_lockdown(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    on: bool,
) -> Result<Queued, ServiceError> {
    actor.require_admin(&format!("PUT /api/v1/devices/{id}/tenant-lockdown"))?;
    let out = blocking({
        let (app, id) = (app.clone(), id.to_string());
        move || Ok(commands::set_tenant_lockdown(&app, &id, on)?)
    })
    .await?;
    let q = Queued::from(&out);
    audit(
        app,
        actor,
        "device.tenant_lockdown",
        id,
        serde_json::json!({ "require_network_in_oobe": on, "command_id": q.command_id }),
    )
    .await;
    Ok(q)
}

/// Queues one command for many devices; per-device outcomes.
pub async fn enqueue_many(
    app: &Arc<App>,
    actor: &Actor,
    device_ids: Vec<String>,
    command: NewCommand,
) -> Result<Vec<(String, BulkOutcome)>, ServiceError> {
    actor.require_admin("POST /api/v1/commands")?;
    if device_ids.is_empty() || device_ids.len() > MAX_BULK_DEVICES {
        return Err(ServiceError::bad(format!(
            "device_ids must hold 1..={MAX_BULK_DEVICES} ids"
        )));
    }
    let out = blocking({
        let app = app.clone();
        move || Ok(commands::enqueue_many(&app, &device_ids, command)?)
    })
    .await?;
    let queued = out
        .iter()
        .filter(|(_, o)| {
            matches!(
                o,
                BulkOutcome::Queued {
                    existing: false,
                    ..
                }
            )
        })
        .count();
    audit(
        app,
        actor,
        "command.bulk",
        "*",
        serde_json::json!({ "devices": out.len(), "queued": queued }),
    )
    .await;
    Ok(out)
}

/// The profiles that concern a device, with their per-device status.
pub async fn profiles(
    app: &Arc<App>,
    id: &str,
) -> Result<Vec<crate::profiles::reconcile::Status>, ServiceError> {
    let (app, id) = (app.clone(), id.to_string());
    blocking(move || {
        let list = crate::profiles::reconcile::device_status(&app, &id)?;
        if list.is_empty() && app.store.get_device(&id)?.is_none() {
            return Err(ServiceError::not_found(format!("device {id}")));
        }
        Ok(list)
    })
    .await
}

/// The groups a device is a member of.
pub async fn groups_of(app: &Arc<App>, id: &str) -> Result<Vec<String>, ServiceError> {
    let (app, id) = (app.clone(), id.to_string());
    blocking(move || Ok(crate::groups::groups_of(app.store.records(), &id)?)).await
}

/// One page of background jobs, in id order.
pub async fn jobs(
    app: &Arc<App>,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<crate::jobs::Job>, ServiceError> {
    let app = app.clone();
    blocking(move || {
        let mut jobs = crate::jobs::list(&app, cursor.as_deref(), limit + 1)?;
        let next = if jobs.len() > limit {
            jobs.truncate(limit);
            jobs.last().map(|j| j.id.clone())
        } else {
            None
        };
        Ok(Page { items: jobs, next })
    })
    .await
}

/// A job's state and progress.
pub async fn job(app: &Arc<App>, id: &str) -> Result<crate::jobs::Job, ServiceError> {
    let (app, id) = (app.clone(), id.to_string());
    blocking(move || crate::jobs::get(&app, &id)?.ok_or_else(|| ServiceError::not_found("job")))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(state: CommandState, created_at: i64) -> CommandRecord {
        CommandRecord {
            command_id: format!("c{created_at}"),
            device_id: "d".into(),
            state,
            created_at,
            ..CommandRecord::default()
        }
    }

    #[test]
    fn summary_counts_states_and_the_oldest_pending() {
        use CommandState::*;
        let q = QueueSummary::of(&[
            cmd(Done, 1),
            cmd(Pending, 30),
            cmd(Sent, 2),
            cmd(Pending, 20),
            cmd(Failed, 3),
            cmd(Cancelled, 4),
            cmd(RolledBack, 5),
            cmd(NotExecuted, 6),
            cmd(CancelledByDevice, 7),
        ]);
        assert_eq!(
            q,
            QueueSummary {
                pending: 2,
                sent: 1,
                done: 1,
                failed: 1,
                not_applied: 3,
                oldest_pending_at: Some(20)
            }
        );
        assert_eq!(QueueSummary::of(&[]).oldest_pending_at, None);
    }
}
