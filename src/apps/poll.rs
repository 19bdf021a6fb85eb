//! Following an install the device runs asynchronously: the `Get …/Status` sent with the
//! install command may say "in progress" (MSI Status 10–55, MSIX 0/1), and only the MSI job's
//! alert or the MSIX `HostedInstall` alert says more by itself. So at the start of each later
//! session of the device, for every required app whose per-device state is not final
//! (pending with Status 48, downloading, installing) and whose commands are all answered,
//! winmdm queues one `Get` of its `Status` node (at most one per app per session, none while
//! the last one is unanswered). A re-read that reports a failure (MSI 30/60, MSIX 2) is followed
//! in the next session by one `Get …/LastError` for the code. After [`MAX_POLLS`] re-reads, or
//! [`MAX_POLL_SECS`] after the install command was sent, without a final state the install is
//! failed with that reason. The reads are kept per (deployment, device) in [`POLLS`] for the
//! deployment's version; [`super::state::derive`] counts the newest answered one.

use serde::{Deserialize, Serialize};

use super::deliver::{self, Intent};
use super::state::{self, AppState, Polled};
use super::{AppKind, APPS};
use crate::app::App;
use crate::groups::pair_key;
use crate::mdm::commands::{prepare, NewCommand};
use crate::profiles::reconcile::{self, DeployState, Deployment};
use crate::profiles::Scope;
use crate::store::records::Kind;
use crate::store::{CommandRecord, CommandState, StoreError};

/// Re-reads per deployment and device, by `profile_id \0 device_id`.
pub const POLLS: Kind<Poll> = Kind::new("app_poll");
/// Re-reads of one install at most (one per session).
pub const MAX_POLLS: u32 = 48;
/// How long after the install command an install may stay unfinished (seconds).
pub const MAX_POLL_SECS: i64 = 24 * 3600;
/// Install alerts of the session's first message looked at (their installs are not re-read).
pub const MAX_REPORTED: usize = 64;

/// The re-reads of one deployment on one device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poll {
    /// The deployment version they belong to (a new version starts over).
    pub version: u32,
    /// Status re-reads queued.
    pub count: u32,
    /// The newest `Get …/Status` (command id).
    pub status_cmd: Option<String>,
    /// The `Get …/LastError` after a failed Status (command id).
    pub last_error_cmd: Option<String>,
    /// Set when the limit passed without a final state.
    pub gave_up: Option<String>,
}

fn get(app: &App, device_id: &str, id: Option<&str>) -> Result<Option<CommandRecord>, StoreError> {
    match id {
        Some(id) => app.store.get_command(device_id, id),
        None => Ok(None),
    }
}

fn record(app: &App, dep: &Deployment) -> Result<Option<Poll>, StoreError> {
    Ok(POLLS
        .get(
            app.store.records(),
            &pair_key(&dep.profile_id, &dep.device_id),
        )?
        .filter(|p| p.version == dep.version))
}

/// The re-reads of `dep` (its version), for [`state::derive`].
pub fn polled(app: &App, dep: &Deployment) -> Result<Option<Polled>, StoreError> {
    let Some(p) = record(app, dep)? else {
        return Ok(None);
    };
    Ok(Some(Polled {
        status: get(app, &dep.device_id, p.status_cmd.as_deref())?,
        last_error: get(app, &dep.device_id, p.last_error_cmd.as_deref())?,
        gave_up: p.gave_up,
    }))
}

fn unanswered(c: Option<&CommandRecord>) -> bool {
    c.is_some_and(|c| matches!(c.state, CommandState::Pending | CommandState::Sent))
}

/// The node whose `Status`/`LastError` an app's install reports.
fn node(rec: &super::AppRecord, scope: Scope) -> Option<String> {
    match rec.kind {
        AppKind::Msi => rec
            .product_code
            .as_deref()
            .map(|pc| deliver::msi_node(scope, pc)),
        AppKind::Msix => rec
            .package_family_name
            .as_deref()
            .map(|pfn| deliver::msix_install_node(scope, pfn)),
    }
}

fn get_command(
    device_id: &str,
    id: String,
    target: String,
    now: i64,
) -> Result<CommandRecord, StoreError> {
    let mut c = prepare(
        device_id,
        NewCommand {
            verb: Some("Get".into()),
            target: Some(target.clone()),
            command_id: Some(id),
            ..NewCommand::default()
        },
        now,
    )
    .map_err(|e| StoreError::Backend {
        reason: format!("app status re-read: {e}"),
    })?;
    c.user_scoped = target.starts_with("./User/");
    c.state = CommandState::Pending;
    Ok(c)
}

/// Whether [`at_session_start`] can have anything to do (one read): some app exists.
pub fn may_act(app: &App) -> Result<bool, StoreError> {
    Ok(!APPS.page(app.store.records(), None, 1)?.0.is_empty())
}

/// At the start of a session of `device_id`: queues the re-reads its unfinished installs need
/// (see the module documentation), except for the installs whose alert the session's first
/// message carries (`reported`: their Source LocURIs). Cheap when no app exists.
pub fn at_session_start(app: &App, device_id: &str, reported: &[String]) -> Result<(), StoreError> {
    let s = app.store.records();
    if !may_act(app)? {
        return Ok(());
    }
    let alerts = app
        .store
        .get_device(device_id)?
        .map(|d| d.alerts)
        .unwrap_or_default();
    let now = app.clock.now_unix();
    let mut cmds = Vec::new();
    let mut ops = Vec::new();
    for dep in reconcile::deployments_of(app, device_id)?.values() {
        let Some((app_id, scope, intent)) = deliver::parse_profile_id(&dep.profile_id) else {
            continue;
        };
        if intent != Intent::Required || dep.state != DeployState::Installed {
            continue;
        }
        let Some(rec) = APPS.get(s, app_id)? else {
            continue;
        };
        let commands = state::commands_of(app, dep)?;
        // The install's own commands first (their Status read is still to come).
        if dep.commands.iter().any(|q| {
            commands
                .get(&q.command_id)
                .is_none_or(|c| unanswered(Some(c)))
        }) {
            continue;
        }
        if dep
            .commands
            .iter()
            .filter_map(|q| commands.get(&q.command_id))
            .filter(|c| c.verb == "Exec")
            .filter_map(|c| c.target.as_deref())
            .any(|t| {
                reported
                    .iter()
                    .any(|r| state::norm_uri(r) == state::norm_uri(t))
            })
        {
            continue; // this message reports it
        }
        let mut poll = record(app, dep)?.unwrap_or(Poll {
            version: dep.version,
            ..Poll::default()
        });
        if poll.gave_up.is_some() {
            continue;
        }
        let view = Polled {
            status: get(app, device_id, poll.status_cmd.as_deref())?,
            last_error: get(app, device_id, poll.last_error_cmd.as_deref())?,
            gave_up: None,
        };
        if unanswered(view.status.as_ref()) || unanswered(view.last_error.as_ref()) {
            continue; // at most one outstanding re-read
        }
        let Some(st) = state::derive(dep, &commands, &alerts, Some(&rec), None, Some(&view)) else {
            continue;
        };
        let Some(base) = node(&rec, scope) else {
            continue;
        };
        let id = |what: &str| format!("poll-{}-v{}-{what}", dep.profile_id, dep.version);
        match st.state {
            AppState::Failed
                if st.error_code.is_none()
                    && poll.last_error_cmd.is_none()
                    && view
                        .status
                        .as_ref()
                        .is_some_and(|c| c.state == CommandState::Done) =>
            {
                // A re-read reported the failure: one read of its code.
                let c = get_command(device_id, id("lasterror"), format!("{base}/LastError"), now)?;
                poll.last_error_cmd = Some(c.command_id.clone());
                cmds.push(c);
            }
            AppState::Pending | AppState::Downloading | AppState::Installing => {
                let exec_sent = dep
                    .commands
                    .iter()
                    .filter_map(|q| commands.get(&q.command_id))
                    .filter(|c| c.verb == "Exec")
                    .filter_map(|c| c.sent_at)
                    .min()
                    .unwrap_or(dep.updated_at);
                if poll.count >= MAX_POLLS || now - exec_sent >= MAX_POLL_SECS {
                    let why = format!(
                        "no final install state after {} status re-reads and {} hours (last state: {})",
                        poll.count,
                        (now - exec_sent) / 3600,
                        serde_json::to_value(st.state)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default()
                    );
                    tracing::warn!(device_id, app_id, reason = %why, "app install given up");
                    poll.gave_up = Some(why);
                } else {
                    poll.count += 1;
                    let c = get_command(
                        device_id,
                        id(&format!("status-{}", poll.count)),
                        format!("{base}/Status"),
                        now,
                    )?;
                    poll.status_cmd = Some(c.command_id.clone());
                    cmds.push(c);
                }
            }
            _ => continue,
        }
        ops.push(POLLS.put_op(&pair_key(&dep.profile_id, device_id), &poll));
    }
    if ops.is_empty() {
        return Ok(());
    }
    tracing::info!(
        device_id,
        reads = cmds.len(),
        "app install state re-read queued"
    );
    app.store.apply_changes(
        crate::store::tx::ChangeSet {
            cancels: Vec::new(),
            commands: cmds,
            ops,
        },
        now,
    )?;
    Ok(())
}
