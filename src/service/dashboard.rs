//! The dashboard's figures: enrolled devices, check-ins in the last hour, commands pending and
//! failed, failing profile deployments, enrollments refused in the last day
//! ([`crate::mdm::refusals`]). Each count reads a bounded number of records and says
//! when it stopped early (`*_partial`), so a large fleet cannot make the page slow.

use std::sync::Arc;

use serde::Serialize;

use super::{blocking, ServiceError};
use crate::app::App;
use crate::mdm::refusals::Recent;
use crate::store::{CommandState, DeviceState};

/// Device records read at most.
pub const DEVICE_BUDGET: usize = 50_000;
/// Devices whose command queues are read at most.
pub const QUEUE_BUDGET: usize = 2_000;
/// Profile deployments read at most.
pub const DEPLOYMENT_BUDGET: usize = 10_000;

/// The dashboard's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Dashboard {
    /// Devices in state `enrolled`.
    pub enrolled: usize,
    /// Device records (any state).
    pub devices: usize,
    /// Devices whose last session started in the last hour.
    pub seen_last_hour: usize,
    /// Commands waiting for the next session or sent without an answer.
    pub commands_pending: usize,
    /// Commands answered with an error (or given up).
    pub commands_failed: usize,
    /// Not every device was read ([`DEVICE_BUDGET`]).
    pub devices_partial: bool,
    /// Not every device's queue was read ([`QUEUE_BUDGET`]).
    pub commands_partial: bool,
    /// Profiles with at least one failed deployment.
    pub profiles_failing: usize,
    /// Failed deployments (device, profile).
    pub deployments_failed: usize,
    /// Profiles.
    pub profiles: usize,
    /// Not every deployment was read ([`DEPLOYMENT_BUDGET`]).
    pub deployments_partial: bool,
    /// Enrollment requests refused in the last day.
    pub refused: usize,
    /// Those refusals per fault kind (`Authentication`, `Authorization`, ...).
    pub refused_by_kind: std::collections::BTreeMap<String, usize>,
}

/// The enrollment requests refused in the last day, newest first, with their reasons.
pub async fn refused(app: &Arc<App>) -> Result<Recent, ServiceError> {
    let app = app.clone();
    blocking(move || Ok(crate::mdm::refusals::recent(&app)?)).await
}

/// Computes the dashboard.
pub async fn dashboard(app: &Arc<App>) -> Result<Dashboard, ServiceError> {
    let app = app.clone();
    blocking(move || {
        let refused = crate::mdm::refusals::recent(&app)?;
        let mut d = Dashboard {
            refused: refused.count,
            refused_by_kind: refused.by_kind,
            ..Dashboard::default()
        };
        let hour_ago = app.clock.now_unix() - 3600;
        let mut after: Option<String> = None;
        'devices: loop {
            let page = app.store.list_devices(after.as_deref(), 1000)?;
            let Some(last) = page.last() else { break };
            after = Some(last.device_id.clone());
            for dev in page {
                if d.devices == DEVICE_BUDGET {
                    d.devices_partial = true;
                    break 'devices;
                }
                d.devices += 1;
                if dev.state == DeviceState::Enrolled {
                    d.enrolled += 1;
                }
                if dev.last_seen.is_some_and(|t| t >= hour_ago) {
                    d.seen_last_hour += 1;
                }
                if d.devices > QUEUE_BUDGET {
                    d.commands_partial = true;
                    continue;
                }
                for c in app.store.list_commands(&dev.device_id)? {
                    match c.state {
                        CommandState::Pending | CommandState::Sent => d.commands_pending += 1,
                        CommandState::Failed => d.commands_failed += 1,
                        _ => {}
                    }
                }
            }
        }
        let mut read = 0;
        let mut cursor: Option<String> = None;
        'profiles: loop {
            let (page, next) =
                crate::profiles::PROFILES.page(app.store.records(), cursor.as_deref(), 100)?;
            for (id, _) in page {
                d.profiles += 1;
                let mut failing = false;
                let mut after: Option<String> = None;
                loop {
                    let (statuses, next) =
                        crate::profiles::reconcile::status_page(&app, &id, after.as_deref(), 500)?;
                    read += statuses.len();
                    let failed = statuses.iter().filter(|s| s.status == "failed").count();
                    d.deployments_failed += failed;
                    failing |= failed > 0;
                    if read >= DEPLOYMENT_BUDGET {
                        d.deployments_partial = true;
                        d.profiles_failing += usize::from(failing);
                        break 'profiles;
                    }
                    match next {
                        Some(n) => after = Some(n),
                        None => break,
                    }
                }
                d.profiles_failing += usize::from(failing);
            }
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        Ok(d)
    })
    .await
}
