//! `GET /api/v1/devices/{device_id}`: the device record plus what an admin looks for next — a
//! summary of its command queue and the state of its current certificate.

use std::sync::Arc;

use hyper::StatusCode;
use serde::Serialize;

use super::{blocking, json, ApiError};
use crate::app::App;
use crate::http::routes::Resp;
use crate::store::{CommandRecord, CommandState};

/// Counts of a device's commands by state.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Serialize)]
struct CertificateView {
    serial: String,
    thumbprint: String,
    not_after: i64,
    issued_at: Option<i64>,
    revoked_at: Option<i64>,
}

pub(super) async fn get_device(app: Arc<App>, id: String) -> Result<Resp, ApiError> {
    let out = blocking({
        let id = id.clone();
        move || {
            let Some(dev) = app.store.get_device(&id)? else {
                return Ok(None);
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
            let mut v = serde_json::to_value(&dev).map_err(|e| ApiError::Internal {
                reason: format!("device to JSON: {e}"),
            })?;
            v["queue"] = serde_json::to_value(queue).unwrap_or_default();
            v["certificate"] = serde_json::to_value(certificate).unwrap_or_default();
            v["owner_status"] =
                serde_json::to_value(crate::owner::status(app.store.as_ref(), &dev)?)
                    .unwrap_or_default();
            Ok(Some(v))
        }
    })
    .await?;
    match out {
        Some(v) => Ok(json(StatusCode::OK, &v)),
        None => Err(ApiError::NotFound {
            what: format!("device {id}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(state: CommandState, created_at: i64) -> CommandRecord {
        CommandRecord {
            command_id: format!("c{created_at}"),
            device_id: "d".into(),
            seq: 0,
            verb: "Get".into(),
            target: None,
            syncml: String::new(),
            user_scoped: false,
            state,
            status: None,
            results: vec![],
            created_at,
            sent_at: None,
            completed_at: None,
            send_count: 0,
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
