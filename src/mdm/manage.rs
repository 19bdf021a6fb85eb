//! One OMA-DM round (MS-MDM §3.1, PROTOCOL.md §6): parse the device's SyncML message, record
//! what it says (statuses, results, alerts, inventory), pick the queued commands that fit, and
//! write the reply. Everything the round changes is committed in one store transaction before
//! the reply leaves, so a crash either loses the whole round (the device retries) or none of it.
//!
//! Rules implemented (and tested in `tests/manage/`):
//! * The reply's `SyncHdr` echoes `SessionID`, numbers its own `MsgID`, has `Target` = DeviceID and
//!   `Source` = our management URL. `Status` for the `SyncHdr` (`CmdRef` 0) comes first, then one
//!   `Status` per client `Alert`, `Replace`, `Add` and `Results` in their order, then our commands
//!   with CmdIDs unique in the session, then `<Final/>` on every message.
//! * A command goes out in order, at least once: `Pending` → `Sent` → `Done` (2xx, 202 kept as
//!   such) or `Failed` (the code kept); 214/215/216 → `CancelledByDevice`/`NotExecuted`/
//!   `RolledBack`. A command sent in a session that ended without its Status goes out again in
//!   the device's next session; one the device answered never does.
//! * An `Atomic`/`Sequence` records every nested command's Status (`inner`); answered 2xx with
//!   a nested failure it is `Failed`. A `Get` is `Done` once its Results are in; Results lost
//!   (424, Alert 1225, session ended mid-object, 2xx without Results) make it `Failed` with an
//!   `error`. Results for a command answered in an earlier message are ignored; results per
//!   command and messages per session are bounded.
//! * User-scoped commands (`./User/...`) wait until the device reports LoginStatus `user`.
//! * The device's `MaxMsgSize` (announced once, it holds for the session) is never exceeded by
//!   a reply carrying our commands: what does not fit waits for the next message (a keep-alive
//!   `Get` keeps the session going when needed); what can never fit fails with an `error`.
//! * Large objects from the device (`MoreData`) are reassembled (213 per chunk, Alert 1222 when
//!   the message lacks `Final`, 424 on a size mismatch, Alert 1225 when a new item starts before
//!   the last chunk).
//! * A single-item `Add`/`Replace`/`Exec` too large for the device's `MaxMsgSize` is sent as a
//!   large object (OMA RepPro §7): one chunk per message, as large as the message allows by its
//!   exact written length, `Meta/Size` on the first, `MoreData` on all but the last; the device
//!   answers 213 per chunk and the last chunk's Status completes it.
//! * A retransmitted message (byte-identical to the session's last one) gets the same reply
//!   without being applied twice, also after the session ended; other out-of-order messages are
//!   refused (409). Rounds of one device are serialised (see [`crate::mdm::session`]); the
//!   invariants are listed in the README ("Management sessions").

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::app::App;
use crate::config::paths;
use crate::mdm::identity::DeviceAuthenticated;
use crate::mdm::session::{self, Chunked, Outstanding, Sending, SessionState};
use crate::metrics::SessionEnd;
use crate::store::{
    clip_bytes, CommandRecord, CommandState, Device, DeviceAlert, DeviceState, InnerStatus,
    ResultItem, Round, RoundCommit, RoundGuard, SessionIndex, StoreError,
};
use crate::syncml::{
    self, Alert, Command, Item, Location, Meta, ParseError, Status, StatusCode, SyncBody, SyncHdr,
    SyncMl,
};

/// `MaxMsgSize` assumed when the device states none.
pub const DEFAULT_MAX_MSG_SIZE: usize = 64 * 1024;
/// Commands sent in one message at most.
pub const MAX_COMMANDS_PER_MESSAGE: usize = 100;
/// Inventory entries kept per device, and the longest value kept.
pub const MAX_INVENTORY: usize = 256;
/// Longest inventory value kept, in bytes (longer ones are cut).
pub const MAX_INVENTORY_VALUE: usize = 4096;
/// Longest inventory node URI kept, in bytes (longer ones are not stored).
pub const MAX_INVENTORY_URI: usize = 256;
/// Generic alerts kept per device.
pub const MAX_ALERTS: usize = 50;
/// Largest object reassembled from chunks (it is kept in the session state between messages).
pub const MAX_LARGE_OBJECT: usize = 4 * 1024 * 1024;
/// Result items kept per command; more are dropped (`results_truncated`).
pub const MAX_RESULTS_PER_COMMAND: usize = 256;
/// Bytes of result data (LocURIs included) kept per command; more are dropped.
pub const MAX_RESULT_BYTES_PER_COMMAND: usize = MAX_LARGE_OBJECT;
/// Replies in one session at most: after that every message of the session gets an Alert 1223
/// (session abort) and is not applied.
pub const MAX_MESSAGES_PER_SESSION: u32 = 1000;

/// The node a keep-alive `Get` reads (read-only, always present: MS-MDM DevInfo).
pub const KEEP_ALIVE_URI: &str = "./DevInfo/DmV";
/// Room kept for one Status (large CmdID/MsgRef/CmdRef) in a quiet reply.
const QUIET_STATUS_LEN: usize =
    "<Status><CmdID>9999999</CmdID><MsgRef>9999999</MsgRef><CmdRef>9999999</CmdRef><Cmd>Results</Cmd><Data>200</Data></Status>"
        .len();
/// Longest `Data` of a kept generic alert, in bytes (longer ones are cut).
pub const MAX_ALERT_DATA: usize = 1024;
/// Longest `Meta/Type` or `Source/LocURI` of a kept generic alert, in bytes.
pub const MAX_ALERT_FIELD: usize = 256;
/// Longest LoginStatus kept (Windows sends `user`, `others`, `none` or `unknown`).
pub const MAX_LOGIN_STATUS: usize = 16;

/// The alert type Windows sends when the user disconnects (MS-MDM; DMClient docs).
pub const UNENROLL_ALERT: &str = "com.microsoft:mdm.unenrollment.userrequest";
/// The LoginStatus alert type.
pub const LOGIN_STATUS_ALERT: &str = "com.microsoft/MDM/LoginStatus";

/// Why a round could not run. [`ManageError::http_status`] is its wire map.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The body is not a SyncML message we accept.
    #[error("malformed SyncML: {0}")]
    Parse(#[from] ParseError),
    /// A required header field is missing or invalid.
    #[error("SyncHdr/{field} is missing or invalid")]
    Header {
        /// Which field.
        field: &'static str,
    },
    /// `SyncHdr/Source/LocURI` names another device than the certificate.
    #[error("certificate of {cert} used for device {claimed:?}")]
    WrongDevice {
        /// DeviceID of the certificate.
        cert: String,
        /// DeviceID the message claims.
        claimed: String,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The message is out of order within its session (see [`classify`]): not applied.
    #[error("message refused: {why}")]
    OutOfOrder {
        /// Why.
        why: &'static str,
    },
    /// The device is no longer enrolled with the certificate that authenticated the request
    /// (it re-enrolled, or was deleted, while the request waited).
    #[error("device {device_id} is not enrolled with this certificate")]
    NotEnrolled {
        /// DeviceID.
        device_id: String,
    },
    /// The round kept conflicting with other writers of the device.
    #[error("round conflicted too often")]
    Busy,
}

impl ManageError {
    /// HTTP status of the failure.
    pub fn http_status(&self) -> u16 {
        match self {
            ManageError::Parse(_) | ManageError::Header { .. } => 400,
            ManageError::WrongDevice { .. } | ManageError::NotEnrolled { .. } => 403,
            ManageError::OutOfOrder { .. } => 409,
            ManageError::Store(e) if e.is_unavailable() => 503,
            ManageError::Store(_) => 500,
            ManageError::Busy => 503,
        }
    }
}

/// What the stored state says about an incoming message.
enum Classified {
    /// A byte-identical copy of the session's last message: its stored reply, nothing applied.
    Retransmission(String),
    /// Package 1 of a new session (a SessionID not stored, or stored with another package 1:
    /// the device restarted). Carries the stored state's numbering, so our MsgIDs and CmdIDs
    /// never repeat within the SessionID.
    New { server_msg: u32, next_cmd_id: u32 },
    /// The next message of a stored session.
    Next(Box<SessionState>),
    /// Anything else: a late copy of an earlier message, a skipped MsgID, another message
    /// reusing an applied MsgID, a message of a session we do not hold. Refused, nothing applied.
    Refused(&'static str),
}

fn classify(stored: Option<SessionState>, client_msg: u32, digest: &str) -> Classified {
    let Some(st) = stored else {
        return if client_msg == 1 {
            Classified::New {
                server_msg: 0,
                next_cmd_id: 0,
            }
        } else {
            Classified::Refused("message of a session the server does not hold")
        };
    };
    if client_msg == st.last_client_msg && st.last_digest.as_deref() == Some(digest) {
        if let Some(r) = st.last_reply {
            return Classified::Retransmission(r);
        }
    }
    if client_msg == 1 {
        if st.first_digest.as_deref() == Some(digest) {
            return Classified::Refused("late copy of package 1 of a session that moved on");
        }
        return Classified::New {
            server_msg: st.server_msg,
            next_cmd_id: st.next_cmd_id,
        };
    }
    if client_msg == st.last_client_msg.saturating_add(1) {
        return Classified::Next(Box::new(st));
    }
    if client_msg == st.last_client_msg {
        Classified::Refused("another message with the MsgID of the last one")
    } else if client_msg < st.last_client_msg {
        Classified::Refused("late copy of an earlier message")
    } else {
        Classified::Refused("MsgID skips a message")
    }
}

/// Runs one round for an authenticated device; returns the reply body.
///
/// Rounds of one device are serialised (see [`crate::mdm::session`]): the in-process lock is
/// held for the round, and the store commit checks that nothing the round read changed
/// meanwhile; a conflicting round runs again from fresh reads.
pub fn handle(app: &App, auth: &DeviceAuthenticated, body: &[u8]) -> Result<Vec<u8>, ManageError> {
    handle_round(app, auth, body).map(|r| r.xml)
}

/// The reply to one device message, with what a device trace records beside it.
#[derive(Debug, Clone, Default)]
pub struct RoundReply {
    /// The SyncML reply.
    pub xml: Vec<u8>,
    /// Ids of our queued commands this reply carries (filled only for a traced device).
    pub delivered: Vec<String>,
}

/// Where a round runs ([`handle_round_async`]).
#[derive(Debug, Clone, Copy)]
pub enum Runs<'a> {
    /// On an async worker thread (stores whose reads are quick,
    /// [`crate::store::SessionStore::reads_inline`]): the commit is awaited without a thread
    /// ([`crate::store::SessionStore::commit_round_async`]), and the follow-up steps that may
    /// write (an Enrollment Status Page starting, app status re-reads, group changes) go to the
    /// blocking pool with this handle on the app.
    OnWorker(&'a Arc<App>),
    /// On a thread that may block (a blocking-pool thread, a test): everything runs in place.
    Blocking,
}

/// [`handle`], also saying which queued commands the reply delivered when the device is traced.
pub fn handle_round(
    app: &App,
    auth: &DeviceAuthenticated,
    body: &[u8],
) -> Result<RoundReply, ManageError> {
    crate::wait::block_on(handle_round_async(app, auth, body, Runs::Blocking))
}

/// [`handle_round`], waiting for the device's round lock and (with [`Runs::OnWorker`]) for the
/// commit without holding a thread.
pub async fn handle_round_async(
    app: &App,
    auth: &DeviceAuthenticated,
    body: &[u8],
    runs: Runs<'_>,
) -> Result<RoundReply, ManageError> {
    let msg = syncml::parse(body)?;
    let device_id = auth.device_id();
    let claimed = msg.hdr.source.loc_uri.trim();
    if claimed != device_id {
        return Err(ManageError::WrongDevice {
            cert: device_id.to_string(),
            claimed: claimed.to_string(),
        });
    }
    let client_msg = msg
        .hdr
        .msg_id()
        .filter(|n| *n > 0)
        .ok_or(ManageError::Header { field: "MsgID" })?;
    let session_id = msg.hdr.session_id.trim().to_string();
    if session_id.is_empty() || session_id.len() > 64 {
        return Err(ManageError::Header { field: "SessionID" });
    }
    tracing::Span::current().record("session_id", session_id.as_str());
    if client_msg == 1 {
        // A session starts: unfinished installs get their Status read again, and an ESP whose
        // apps were reported earlier, or whose timeout passed, releases the device in this
        // session's reply.
        // (Not for an install this very message reports with its alert.)
        let reported: Vec<String> = msg
            .body
            .commands
            .iter()
            .filter_map(|c| match c {
                Command::Alert(a) => Some(a),
                _ => None,
            })
            .flat_map(|a| a.items.iter())
            .filter(|i| {
                meta_type(i, None).is_some_and(|t| {
                    t == crate::apps::state::INSTALL_ALERT
                        || t == crate::apps::state::HOSTED_INSTALL_ALERT
                })
            })
            .filter_map(|i| i.source.as_ref().map(|s| s.loc_uri.to_string()))
            .take(crate::apps::poll::MAX_REPORTED)
            .collect();
        // Most sessions have nothing to do here (no app, no ESP): known from two reads.
        let work = crate::apps::poll::may_act(app).unwrap_or(true)
            || crate::apps::esp::may_act(app, device_id).unwrap_or(true);
        if work {
            let device = device_id.to_string();
            off_worker(app, runs, move |app| {
                if let Err(e) = crate::apps::poll::at_session_start(app, &device, &reported) {
                    tracing::error!(device_id = %device, error = %e, "app status re-read failed; retried next session");
                }
                if let Err(e) = crate::apps::esp::after_round(app, &device) {
                    tracing::error!(device_id = %device, error = %e, "ESP tracking failed; retried next session");
                }
            })
            .await;
        }
    }
    let digest = session::message_digest(body);
    let lock = session::lock_device(device_id).await;
    for attempt in 1..=session::MAX_ROUND_ATTEMPTS {
        let input = RoundInput {
            msg: &msg,
            session_id: &session_id,
            client_msg,
            digest: &digest,
        };
        let Prepared { out, after, commit } = run_round(app, auth, &input)?;
        let committed = match commit {
            None => RoundCommit::Committed,
            Some((round, now)) => match runs {
                Runs::OnWorker(_) => app.store.commit_round_async(round, now).await?,
                Runs::Blocking => app.store.commit_round(&round, now)?,
            },
        };
        match committed {
            RoundCommit::Committed => {
                drop(lock);
                let delivered = after.run(app, device_id, runs).await;
                return Ok(RoundReply {
                    xml: out,
                    delivered,
                });
            }
            RoundCommit::Conflict => {
                tracing::debug!(
                    device_id,
                    session_id,
                    attempt,
                    "round conflicted with another writer; running it again"
                );
            }
        }
    }
    tracing::warn!(
        device_id,
        session_id,
        "round conflicted {} times; refused",
        session::MAX_ROUND_ATTEMPTS
    );
    Err(ManageError::Busy)
}

/// Runs `f` where it may block: in place, or (on an async worker) on the blocking pool.
async fn off_worker(app: &App, runs: Runs<'_>, f: impl FnOnce(&App) + Send + 'static) {
    match runs {
        Runs::Blocking => f(app),
        Runs::OnWorker(arc) => {
            let a = arc.clone();
            if let Err(e) = crate::wait::on_blocking_pool(move || f(&a)).await {
                tracing::error!(error = %e, "a round's follow-up work panicked");
            }
        }
    }
}

struct RoundInput<'m> {
    msg: &'m SyncMl<'m>,
    session_id: &'m str,
    client_msg: u32,
    digest: &'m str,
}

/// A round built and ready: its reply, what follows the commit, and what to commit (`None`
/// for a retransmission, which changes nothing).
struct Prepared {
    out: Vec<u8>,
    after: AfterCommit,
    commit: Option<(Round, i64)>,
}

/// Work done after a round committed, outside the device's lock.
#[derive(Default)]
struct AfterCommit {
    groups: bool,
    convert: bool,
    /// The round started a session (metrics).
    started: bool,
    /// The round ended its session, how (metrics).
    ended: Option<SessionEnd>,
    /// Queued commands the reply carries (only for a traced device).
    delivered: Vec<String>,
}

impl AfterCommit {
    /// Runs the follow-up work; returns [`AfterCommit::delivered`].
    async fn run(self, app: &App, device_id: &str, runs: Runs<'_>) -> Vec<String> {
        if self.started {
            app.metrics.session_started();
        }
        if let Some(how) = self.ended {
            app.metrics.session_ended(how);
        }
        // The round may have brought the install alerts, or (an Autopilot link, a group
        // change) an ESP: start or advance the device's ESP (two reads when there is none).
        let esp = crate::apps::esp::may_act(app, device_id).unwrap_or(true);
        if !(self.groups || self.convert || esp) {
            return self.delivered;
        }
        let (groups, convert) = (self.groups, self.convert);
        let device = device_id.to_string();
        off_worker(app, runs, move |app| {
            let device_id = device.as_str();
            if groups {
                let _ = crate::groups::on_device_changed(app, device_id); // groups + profiles (errors logged)
            }
            if convert {
                if let Err(e) = crate::autopilot::convert::after_round(app, device_id) {
                    tracing::error!(device_id, error = %e, "Autopilot conversion failed; retried at the next report");
                }
            }
            if esp {
                if let Err(e) = crate::apps::esp::after_round(app, device_id) {
                    tracing::error!(device_id, error = %e, "ESP tracking failed; retried next session");
                }
            }
        })
        .await;
        self.delivered
    }
}

fn decode_index(bytes: Option<Vec<u8>>) -> SessionIndex {
    bytes
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// One attempt at a round: reads, builds the reply and what to commit (the caller commits).
fn run_round(
    app: &App,
    auth: &DeviceAuthenticated,
    input: &RoundInput<'_>,
) -> Result<Prepared, ManageError> {
    let (msg, session_id, client_msg) = (input.msg, input.session_id, input.client_msg);
    let device_id = auth.device_id();
    let now = app.clock.now_unix();
    let index = decode_index(app.store.get_session(device_id, "")?);
    let touched = index
        .sessions
        .iter()
        .find(|(s, _)| s == session_id)
        .map(|(_, t)| *t);
    let expired = touched.is_some_and(|t| now - t > session::SESSION_TTL_SECS);
    let stored = if expired {
        None
    } else {
        app.store
            .get_session(device_id, session_id)?
            .and_then(|b| serde_json::from_slice::<SessionState>(&b).ok())
    };
    // The device as it is now (another round may have changed it since authentication).
    let device = app
        .store
        .get_device(device_id)?
        .filter(|d| {
            d.state == DeviceState::Enrolled
                && (d.cert_serial == auth.serial()
                    || d.previous_cert
                        .as_ref()
                        .is_some_and(|p| p.serial == auth.serial()))
        })
        .ok_or_else(|| ManageError::NotEnrolled {
            device_id: device_id.to_string(),
        })?;
    let (state, new_session) = match classify(stored, client_msg, input.digest) {
        Classified::Retransmission(reply) => {
            tracing::info!(
                device_id,
                session_id,
                msg_id = client_msg,
                "retransmitted message: same reply"
            );
            return Ok(Prepared {
                out: reply.into_bytes(),
                after: AfterCommit::default(),
                commit: None,
            });
        }
        Classified::Refused(why) => {
            tracing::warn!(
                device_id,
                session_id,
                msg_id = client_msg,
                why,
                "message refused: not applied"
            );
            return Err(ManageError::OutOfOrder { why });
        }
        Classified::New {
            server_msg,
            next_cmd_id,
        } => (
            SessionState {
                server_msg,
                first_server_msg: server_msg,
                next_cmd_id,
                first_digest: Some(input.digest.to_string()),
                ..SessionState::default()
            },
            true,
        ),
        Classified::Next(st) => (*st, false),
    };
    // The newest session the device started is its current one; an older one still talking
    // is wound down: what it reports is applied, but it gets no new commands.
    let superseded = !new_session && index.current.as_deref().is_some_and(|c| c != session_id);
    let before = device.clone();
    let mut round = RoundBuilder {
        app,
        device,
        state,
        commands: BTreeMap::new(),
        read: BTreeMap::new(),
        revoke: Vec::new(),
        reply: Vec::new(),
        alerts: Vec::new(),
        answered_now: BTreeSet::new(),
        client_msg,
        now,
        end_session: false,
        end_reason: None,
    };
    round.device.last_seen = Some(now);
    if new_session {
        // Commands sent in the device's earlier sessions without a Status go out again.
        round.requeue_unanswered()?;
    }
    if superseded {
        tracing::info!(
            device_id,
            session_id,
            current = ?index.current,
            "message of a session the device has since replaced: applied, no new commands"
        );
        round.state.sending = None;
    }
    round.reply.push(status_cmd(
        &mut round.state,
        client_msg,
        "0",
        "SyncHdr",
        StatusCode::OK,
    ));
    let mut wants_next_message = false;
    let over_limit = round.over_message_limit();
    for cmd in msg.body.commands.iter().filter(|_| !over_limit) {
        if round.apply(cmd)? {
            wants_next_message = true;
        }
    }
    round.after_apply();
    // Autopilot links only on the Results of the server's own Gets (issue 13).
    let touched: Vec<&CommandRecord> = round
        .commands
        .values()
        .filter(|c| round.read.get(&c.command_id) != Some(*c))
        .collect();
    let autopilot_answered = crate::autopilot::link::touched(&touched);
    if let Err(e) = crate::autopilot::link::on_round(app, &mut round.device, &touched) {
        tracing::error!(device_id, error = %e, "Autopilot link failed; retried when the serial is reported again");
    }
    // Outstanding CmdIDs are kept for the whole session: a large Results may arrive messages
    // after the Status of its Get.
    let hdr = SyncHdr {
        ver_dtd: "1.2".into(),
        ver_proto: "DM/1.2".into(),
        session_id: session_id.to_string().into(),
        msg_id: (round.state.server_msg + 1).to_string().into(),
        target: Location::new(device_id.to_string()),
        source: Location::new(app.cfg.mgmt_url.join(paths::MANAGEMENT)),
        ..SyncHdr::default()
    };
    let mut reply = SyncMl {
        hdr,
        body: SyncBody {
            commands: std::mem::take(&mut round.reply),
            is_final: true,
        },
    };
    let device_has_more = !msg.body.is_final || wants_next_message;
    if device_has_more {
        // The device's package is not complete: ask for the next message before sending more.
        let id = round.state.next_id();
        reply.body.commands.push(Command::Alert(Alert {
            cmd_id: Some(id.into()),
            data: Some("1222".into()),
            ..Alert::default()
        }));
    }
    let mut sent = 0;
    let budget = round.budget(msg.hdr.max_msg_size());
    if !device_has_more
        && !round.end_session
        && !superseded
        && round.device.state == DeviceState::Enrolled
    {
        sent = round.add_queued(&mut reply, budget)?;
    }
    // A round that may move the device into groups (an Autopilot link, new attributes) while
    // its Enrollment Status Page can still start keeps the session going with a keep-alive
    // `Get` when it has nothing to send: the ESP nodes and the apps the new groups bring are
    // queued when the round commits, and go out in this same, first session.
    if sent == 0
        && !device_has_more
        && !round.end_session
        && !superseded
        && round.device.state == DeviceState::Enrolled
        && (autopilot_answered
            || crate::groups::attributes_changed(&before, &round.device)
            || crate::autopilot::convert::reported(&before, &round.device))
        && crate::apps::esp::may_start(app, &round.device, now)?
    {
        let size = syncml::written_len(&reply);
        sent = round.keep_alive(&mut reply, size, budget);
    }
    round.state.server_msg += 1;
    round.state.last_client_msg = client_msg;
    let mut out = Vec::with_capacity(syncml::written_len(&reply));
    syncml::write(&reply, &mut out);
    // Over the message bound the session is not over: every later message of it gets the
    // abort again instead of starting over.
    let session_over = !over_limit && (round.end_session || (sent == 0 && !device_has_more));
    if session_over {
        round.session_ended()?;
    }
    // The state is kept even when the session is over: a retransmission of the device's final
    // message gets this reply again, and the SessionID's numbering is never reused.
    round.state.ended = session_over;
    round.state.last_digest = Some(input.digest.to_string());
    round.state.last_reply = Some(String::from_utf8_lossy(&out).into_owned());
    let session_bytes = serde_json::to_vec(&round.state).unwrap_or_default();
    tracing::info!(
        device_id,
        session_id,
        msg_id = client_msg,
        sent,
        outstanding = round.state.outstanding.len(),
        session_over,
        "management round"
    );
    super::renew::settle_round(&mut round.device, auth.serial(), &mut round.revoke, now);
    let after = AfterCommit {
        groups: crate::groups::attributes_changed(&before, &round.device),
        convert: autopilot_answered || crate::autopilot::convert::reported(&before, &round.device),
        started: new_session,
        ended: session_over.then(|| round.end_reason.unwrap_or(SessionEnd::Completed)),
        delivered: if app.tracer.wants(device_id) {
            delivered_ids(&reply, &round.state)
        } else {
            Vec::new()
        },
    };
    let (next_index, drop) = next_index(&index, session_id, new_session, now);
    let (commands, read_states) = round.changed_commands();
    let events =
        crate::webhook::round_events(app, &before, &round.device, &commands, &read_states)?;
    // An empty check-in (nothing sent, nothing answered, nothing about the device changed but
    // its last-seen time) need not wait for the disk: see `Round::lazy_sync`.
    let lazy_sync = sent == 0
        && commands.is_empty()
        && read_states.is_empty()
        && round.revoke.is_empty()
        && events.is_empty()
        && Device {
            last_seen: before.last_seen,
            ..round.device.clone()
        } == before;
    // A device record the round did not change (the session's later messages, within the
    // second of its last-seen time) is not written again.
    let device = (round.device != before || !round.revoke.is_empty()).then_some(round.device);
    let store_round = Round {
        events,
        device,
        commands,
        read_states,
        session: Some((
            device_id.to_string(),
            session_id.to_string(),
            Some(session_bytes),
        )),
        revoke: round.revoke,
        lazy_sync,
        guard: Some(RoundGuard {
            device_id: device_id.to_string(),
            generation: index.generation,
            index: next_index,
            drop,
        }),
    };
    Ok(Prepared {
        out,
        after,
        commit: Some((store_round, now)),
    })
}

/// The device's session index after a round of `session_id`, and the sessions to drop: those
/// idle longer than [`session::SESSION_TTL_SECS`] and, past
/// [`session::MAX_SESSIONS_PER_DEVICE`], the least recently used.
fn next_index(
    index: &SessionIndex,
    session_id: &str,
    new_session: bool,
    now: i64,
) -> (SessionIndex, Vec<String>) {
    let mut next = index.clone();
    if new_session {
        next.current = Some(session_id.to_string());
    }
    next.sessions.retain(|(s, _)| s != session_id);
    next.sessions.insert(0, (session_id.to_string(), now));
    next.sessions.sort_by_key(|s| std::cmp::Reverse(s.1));
    let mut drop = Vec::new();
    let mut kept = Vec::new();
    for (s, t) in next.sessions {
        let fresh = now - t <= session::SESSION_TTL_SECS;
        if s == session_id || (fresh && kept.len() < session::MAX_SESSIONS_PER_DEVICE) {
            kept.push((s, t));
        } else {
            drop.push(s);
        }
    }
    if next
        .current
        .as_ref()
        .is_some_and(|c| !kept.iter().any(|(s, _)| s == c))
    {
        next.current = None;
    }
    next.sessions = kept;
    (next, drop)
}

struct RoundBuilder<'a> {
    app: &'a App,
    device: Device,
    state: SessionState,
    /// Commands touched this round, by id (written back in the round's transaction).
    commands: BTreeMap<String, CommandRecord>,
    /// The same commands as the round read them (the commit checks they did not change since).
    read: BTreeMap<String, CommandRecord>,
    revoke: Vec<(String, String)>,
    reply: Vec<Command<'static>>,
    /// Alerts for the device (1225), added after the Statuses.
    alerts: Vec<Command<'static>>,
    /// Commands whose Status arrived in this message (their Results may follow in it).
    answered_now: BTreeSet<String>,
    client_msg: u32,
    now: i64,
    end_session: bool,
    /// Why the device ended the session, when it did (unenrollment, Alert 1223).
    end_reason: Option<SessionEnd>,
}

fn status_cmd(
    st: &mut SessionState,
    msg_ref: u32,
    cmd_ref: &str,
    cmd: &str,
    code: StatusCode,
) -> Command<'static> {
    Command::Status(Status {
        cmd_id: Some(st.next_id().into()),
        msg_ref: msg_ref.to_string().into(),
        cmd_ref: cmd_ref.to_string().into(),
        cmd: cmd.to_string().into(),
        data: code.0.to_string().into(),
        ..Status::default()
    })
}

fn meta_type<'x>(item: &'x Item<'_>, cmd_meta: Option<&'x Meta<'_>>) -> Option<&'x str> {
    item.meta
        .as_ref()
        .and_then(|m| m.ty.as_deref())
        .or_else(|| cmd_meta.and_then(|m| m.ty.as_deref()))
        .map(str::trim)
}

impl RoundBuilder<'_> {
    fn command(&mut self, id: &str) -> Result<Option<&mut CommandRecord>, StoreError> {
        if !self.commands.contains_key(id) {
            match self.app.store.get_command(&self.device.device_id, id)? {
                Some(c) => self.track(c),
                None => return Ok(None),
            }
        }
        Ok(self.commands.get_mut(id))
    }

    /// Takes `c`, as read from the store, into this round.
    fn track(&mut self, c: CommandRecord) {
        self.read
            .entry(c.command_id.clone())
            .or_insert_with(|| c.clone());
        self.commands.entry(c.command_id.clone()).or_insert(c);
    }

    /// The commands this round changed, and the state each was read in.
    fn changed_commands(&mut self) -> (Vec<CommandRecord>, Vec<(String, CommandState)>) {
        let mut out = Vec::new();
        let mut states = Vec::new();
        for (id, c) in std::mem::take(&mut self.commands) {
            let Some(orig) = self.read.get(&id) else {
                continue;
            };
            if *orig != c {
                states.push((id, orig.state));
                out.push(c);
            }
        }
        (out, states)
    }

    /// A new session: commands sent before without an answer go out again.
    fn requeue_unanswered(&mut self) -> Result<(), StoreError> {
        for c in self.app.store.queued(&self.device.device_id)? {
            if c.state == CommandState::Sent {
                let id = c.command_id.clone();
                self.track(c);
                if let Some(c) = self.commands.get_mut(&id) {
                    c.state = CommandState::Pending;
                    // A Get answered 2xx whose Results never came goes again, unanswered.
                    c.status = None;
                }
            }
        }
        Ok(())
    }

    fn ack(&mut self, cmd_ref: Option<&str>, name: &str, code: StatusCode) {
        let r = status_cmd(
            &mut self.state,
            self.client_msg,
            cmd_ref.unwrap_or(""),
            name,
            code,
        );
        self.reply.push(r);
    }

    /// Applies one client command; returns whether the device must send another message
    /// (a chunked object is incomplete).
    fn apply(&mut self, cmd: &Command<'_>) -> Result<bool, StoreError> {
        match cmd {
            Command::Status(s) => {
                self.on_status(s)?;
                Ok(false)
            }
            Command::Alert(a) => {
                self.on_alert(a);
                self.ack(a.cmd_id.as_deref(), "Alert", StatusCode::OK);
                Ok(false)
            }
            Command::Results(r) => {
                let cmd_ref = r.cmd_ref.trim();
                let target = self.state.outstanding.get(cmd_ref).cloned();
                if let Some(o) = &target {
                    if !self.wants_results(o, cmd_ref)? {
                        tracing::warn!(device_id = %self.device.device_id, command_id = %o.command_id, cmd_ref, "Results for an answered command ignored");
                        self.ack(r.cmd_id.as_deref(), "Results", StatusCode::OK);
                        return Ok(false);
                    }
                }
                let mut more = false;
                for item in r.items.iter() {
                    match self.reassemble("Results", Some(&r.cmd_ref), item, r.meta.as_ref()) {
                        Chunk::More => more = true,
                        Chunk::Mismatch(why) => {
                            if let Some(o) = &target {
                                self.results_lost(&o.command_id, &why)?;
                            }
                            self.ack(r.cmd_id.as_deref(), "Results", StatusCode::SIZE_MISMATCH);
                            return Ok(false);
                        }
                        Chunk::Whole(data, format, ty) => {
                            let source = item.source.as_ref().map(|s| s.loc_uri.to_string());
                            if let Some(src) = &source {
                                self.inventory(src, data.as_deref());
                            }
                            if let Some(o) = &target {
                                let item = ResultItem {
                                    target: source,
                                    format,
                                    ty,
                                    data,
                                };
                                self.add_result(&o.command_id, item)?;
                            }
                        }
                    }
                }
                let code = if more {
                    StatusCode::CHUNKED_ITEM_ACCEPTED
                } else {
                    StatusCode::OK
                };
                self.ack(r.cmd_id.as_deref(), "Results", code);
                Ok(more)
            }
            Command::Replace(c) | Command::Add(c) => {
                let name = cmd.name();
                let mut more = false;
                for item in c.items.iter() {
                    match self.reassemble(name, None, item, c.meta.as_ref()) {
                        Chunk::More => more = true,
                        Chunk::Mismatch(_) => {
                            self.ack(c.cmd_id.as_deref(), name, StatusCode::SIZE_MISMATCH);
                            return Ok(false);
                        }
                        Chunk::Whole(data, _, _) => {
                            if let Some(src) = item.source.as_ref().or(item.target.as_ref()) {
                                let src = src.loc_uri.to_string();
                                self.inventory(&src, data.as_deref());
                            }
                        }
                    }
                }
                let code = if more {
                    StatusCode::CHUNKED_ITEM_ACCEPTED
                } else {
                    StatusCode::OK
                };
                self.ack(c.cmd_id.as_deref(), name, code);
                Ok(more)
            }
            other => {
                // A device does not Get/Exec/Delete on the server.
                self.ack(
                    other.cmd_id(),
                    other.name(),
                    StatusCode::OPTIONAL_FEATURE_NOT_SUPPORTED,
                );
                Ok(false)
            }
        }
    }

    fn on_status(&mut self, s: &Status<'_>) -> Result<(), StoreError> {
        let cmd_ref = s.cmd_ref.trim();
        if cmd_ref == "0" || s.cmd.trim() == "SyncHdr" {
            return Ok(());
        }
        let Some(o) = self.state.outstanding.get(cmd_ref).cloned() else {
            tracing::debug!(device_id = %self.device.device_id, cmd_ref, "Status for a CmdID we are not waiting for");
            return Ok(());
        };
        let code = s.code().map(|c| c.0);
        if !o.primary {
            // A command nested in an Atomic/Sequence: recorded on the group.
            if let Some(c) = self.command(&o.command_id)? {
                if let Some(i) = c.inner.iter_mut().find(|i| i.cmd_id == cmd_ref) {
                    i.status = code;
                }
                settle_group(c);
            }
            return Ok(());
        }
        let awaited = self
            .state
            .sending
            .as_ref()
            .filter(|snd| snd.command_id == o.command_id)
            .and_then(|snd| snd.awaiting.clone());
        if code == Some(StatusCode::CHUNKED_ITEM_ACCEPTED.0) {
            // A chunk of a large object was buffered; the last chunk's Status completes it.
            // Only the 213 for the chunk we wait for moves the send position.
            match (awaited, self.state.sending.as_mut()) {
                (Some((id, end, _)), Some(snd)) if id == cmd_ref => {
                    snd.offset = end;
                    snd.awaiting = None;
                }
                _ => {
                    tracing::warn!(device_id = %self.device.device_id, cmd_ref, "213 for a chunk we are not waiting for; ignored");
                }
            }
            return Ok(());
        }
        if let Some((id, end, last_chunk)) = awaited {
            let success = s.code().is_some_and(|c| c.is_success());
            if success && (id != cmd_ref || !last_chunk) {
                // A success for a chunk that is not the last, or for an earlier chunk: the
                // object was not received whole, so the command is not done. It goes out again
                // from the start in the device's next session.
                tracing::warn!(device_id = %self.device.device_id, cmd_ref, end, "Status for a large-object chunk out of order; object abandoned for this session");
                self.state.sending = None;
                return Ok(());
            }
            self.state.sending = None;
        }
        let now = self.now;
        let mut answered = false;
        if let Some(c) = self.command(&o.command_id)? {
            if c.state.is_terminal() {
                return Ok(());
            }
            c.status = code;
            let state = CommandState::of_status(code);
            if state == CommandState::Done && c.verb == "Get" && c.results.is_empty() {
                // A Get is done when its Results are in (they follow, maybe over several
                // messages as a large object); until then it stays `sent`.
                tracing::debug!(device_id = %c.device_id, command_id = %c.command_id, "Get answered; waiting for its Results");
            } else {
                c.state = state;
                c.completed_at = Some(now);
                answered = true;
            }
            settle_group(c);
            if code == Some(418) {
                tracing::warn!(device_id = %c.device_id, command_id = %c.command_id, "device reports 418 already exists; not retried");
            }
        }
        if answered {
            self.answered_now.insert(o.command_id);
        }
        Ok(())
    }

    /// Whether Results for our CmdID `cmd_ref` (carrying command `o`) are still wanted: its
    /// command is unanswered, was answered in this very message (Results follow the Status), or
    /// this continues a large object accepted when it started. Anything else is a duplicate.
    fn wants_results(&mut self, o: &Outstanding, cmd_ref: &str) -> Result<bool, StoreError> {
        let continuing = self.state.chunked.as_ref().is_some_and(|c| {
            c.cmd == "Results" && c.cmd_ref.as_deref().map(str::trim) == Some(cmd_ref)
        });
        if continuing || self.answered_now.contains(&o.command_id) {
            return Ok(true);
        }
        Ok(self
            .command(&o.command_id)?
            .is_some_and(|c| !c.state.is_terminal()))
    }

    /// Appends one result item to a command, within the per-command bounds; a Get answered 2xx
    /// is done once its Results are in.
    fn add_result(&mut self, command_id: &str, item: ResultItem) -> Result<(), StoreError> {
        let now = self.now;
        let mut answered = false;
        if let Some(c) = self.command(command_id)? {
            let used: usize = c.results.iter().map(result_bytes).sum();
            if c.results.len() >= MAX_RESULTS_PER_COMMAND
                || used + result_bytes(&item) > MAX_RESULT_BYTES_PER_COMMAND
            {
                if !c.results_truncated {
                    tracing::warn!(device_id = %c.device_id, command_id, items = c.results.len(), bytes = used, "results over the per-command bound dropped");
                }
                c.results_truncated = true;
            } else {
                c.results.push(item);
            }
            if c.state == CommandState::Sent
                && CommandState::of_status(c.status) == CommandState::Done
            {
                c.state = CommandState::Done;
                c.completed_at = Some(now);
                answered = true;
            }
        }
        if answered {
            self.answered_now.insert(command_id.to_string());
        }
        Ok(())
    }

    /// The Results of `command_id` are lost (size mismatch, interrupted or abandoned large
    /// object): it must not look successful.
    fn results_lost(&mut self, command_id: &str, why: &str) -> Result<(), StoreError> {
        let now = self.now;
        if let Some(c) = self.command(command_id)? {
            tracing::warn!(device_id = %c.device_id, command_id, why, "results lost; command failed");
            if c.state != CommandState::Cancelled {
                c.state = CommandState::Failed;
                c.error = Some(format!("results lost: {why}"));
                c.completed_at = Some(now);
            }
        }
        Ok(())
    }

    /// Over [`MAX_MESSAGES_PER_SESSION`]: the message is not applied and the device is told to
    /// abort the session (Alert 1223).
    fn over_message_limit(&mut self) -> bool {
        let messages = self
            .state
            .server_msg
            .saturating_sub(self.state.first_server_msg);
        if messages < MAX_MESSAGES_PER_SESSION {
            return false;
        }
        tracing::warn!(device_id = %self.device.device_id, messages, "session over the message bound; aborting it");
        let id = self.state.next_id();
        self.alerts.push(Command::Alert(Alert {
            cmd_id: Some(id.into()),
            data: Some("1223".into()),
            ..Alert::default()
        }));
        self.end_session = true;
        true
    }

    /// After the device's commands: our alerts follow the Statuses.
    fn after_apply(&mut self) {
        self.reply.append(&mut self.alerts);
    }

    /// The session ends with this reply: a large object still incomplete is lost, and a Get
    /// answered 2xx whose Results never came is failed rather than left looking answered.
    fn session_ended(&mut self) -> Result<(), StoreError> {
        if let Some(ch) = self.state.chunked.take() {
            let target = ch
                .cmd_ref
                .as_deref()
                .and_then(|r| self.state.outstanding.get(r.trim()))
                .cloned();
            if let Some(o) = target {
                self.results_lost(
                    &o.command_id,
                    "the session ended before the object's last chunk",
                )?;
            }
        }
        let primaries: Vec<String> = self
            .state
            .outstanding
            .values()
            .filter(|o| o.primary)
            .map(|o| o.command_id.clone())
            .collect();
        let now = self.now;
        for id in primaries {
            if let Some(c) = self.command(&id)? {
                if c.state == CommandState::Sent
                    && CommandState::of_status(c.status) == CommandState::Done
                {
                    tracing::warn!(device_id = %c.device_id, command_id = %c.command_id, status = ?c.status, "Get answered without Results; failed");
                    c.state = CommandState::Failed;
                    c.error = Some(format!(
                        "results lost: the device answered {} but sent no Results",
                        c.status.unwrap_or_default()
                    ));
                    c.completed_at = Some(now);
                }
            }
        }
        Ok(())
    }

    /// The size budget of this reply: the `MaxMsgSize` of this message, else the one announced
    /// earlier in the session, else [`DEFAULT_MAX_MSG_SIZE`].
    fn budget(&mut self, announced: Option<u32>) -> usize {
        if announced.is_some() {
            self.state.max_msg_size = announced;
        }
        self.state
            .max_msg_size
            .map_or(DEFAULT_MAX_MSG_SIZE, |n| n as usize)
    }

    fn on_alert(&mut self, a: &Alert<'_>) {
        match a.code() {
            Some(1224) => {
                for item in a.items.iter() {
                    if meta_type(item, None) == Some(LOGIN_STATUS_ALERT) {
                        self.device.login_status = item
                            .data
                            .as_deref()
                            .map(|d| clip_bytes(d.trim(), MAX_LOGIN_STATUS));
                    } else if meta_type(item, None) == Some(crate::apps::state::INSTALL_ALERT) {
                        // The EnterpriseDesktopAppManagement CSP page's alert example carries
                        // the install result with Data 1224; Windows sends it as 1226.
                        self.generic_alert(item);
                    }
                }
            }
            Some(1226) => {
                for item in a.items.iter() {
                    self.generic_alert(item);
                }
            }
            Some(1223) => {
                tracing::info!(device_id = %self.device.device_id, "device aborted the session (1223)");
                self.end_session = true;
                self.end_reason = Some(SessionEnd::AbortedByDevice);
            }
            _ => {}
        }
    }

    /// Records one item of a generic alert (1226) on the device (bounded in count and size).
    fn generic_alert(&mut self, item: &Item<'_>) {
        let ty = meta_type(item, None).map(str::to_string);
        let data = item.data.as_deref();
        if data.is_some_and(|d| d.len() > MAX_ALERT_DATA) {
            tracing::info!(device_id = %self.device.device_id, bytes = data.map_or(0, str::len), "1226 alert data cut to {MAX_ALERT_DATA} bytes");
        }
        let alert = DeviceAlert {
            alert_type: ty.as_deref().map(|t| clip_bytes(t, MAX_ALERT_FIELD)),
            source: item
                .source
                .as_ref()
                .map(|s| clip_bytes(&s.loc_uri, MAX_ALERT_FIELD)),
            data: data.map(|d| clip_bytes(d, MAX_ALERT_DATA)),
            at: self.now,
        };
        self.device.alerts.push(alert);
        if self.device.alerts.len() > MAX_ALERTS {
            self.device.alerts.remove(0);
        }
        if ty.as_deref() == Some(UNENROLL_ALERT) {
            tracing::info!(device_id = %self.device.device_id, "device unenrolled at the user's request");
            self.device.state = DeviceState::Unenrolled;
            self.revoke.push((
                self.device.cert_serial.clone(),
                "unenrolled by the user".into(),
            ));
            self.end_session = true;
            self.end_reason = Some(SessionEnd::Unenrolled);
        }
    }

    fn inventory(&mut self, uri: &str, data: Option<&str>) {
        let uri = uri.trim();
        if !(uri.starts_with("./DevInfo/") || uri.starts_with("./DevDetail/")) {
            return;
        }
        let Some(v) = data else { return };
        if uri.len() > MAX_INVENTORY_URI {
            tracing::info!(device_id = %self.device.device_id, bytes = uri.len(), "inventory node URI too long; not stored");
            return;
        }
        if self.device.inventory.len() >= MAX_INVENTORY && !self.device.inventory.contains_key(uri)
        {
            return;
        }
        self.device
            .inventory
            .insert(uri.to_string(), clip_bytes(v, MAX_INVENTORY_VALUE));
    }

    fn reassemble(
        &mut self,
        cmd: &str,
        cmd_ref: Option<&str>,
        item: &Item<'_>,
        cmd_meta: Option<&Meta<'_>>,
    ) -> Chunk {
        let format = item
            .meta
            .as_ref()
            .and_then(|m| m.format.as_deref())
            .or_else(|| cmd_meta.and_then(|m| m.format.as_deref()))
            .map(str::to_string);
        let ty = meta_type(item, cmd_meta).map(str::to_string);
        let source = item.source.as_ref().map(|s| s.loc_uri.to_string());
        let data = item.data.as_deref().unwrap_or("");
        let continuing =
            self.state.chunked.as_ref().is_some_and(|c| {
                c.cmd == cmd && c.source == source && c.cmd_ref.as_deref() == cmd_ref
            });
        if !continuing {
            if let Some(old) = self.state.chunked.take() {
                self.interrupted(old);
            }
        }
        let declared = item
            .meta
            .as_ref()
            .and_then(Meta::size)
            .or_else(|| cmd_meta.and_then(Meta::size));
        if !item.more_data && !continuing {
            if let Some(n) = declared.filter(|n| *n != data.len() as u64) {
                tracing::warn!(device_id = %self.device.device_id, declared = n, got = data.len(), "item size mismatch");
                return Chunk::Mismatch(format!(
                    "size mismatch (424): declared {n} bytes, received {}",
                    data.len()
                ));
            }
            return Chunk::Whole(item.data.as_deref().map(str::to_string), format, ty);
        }
        if !continuing {
            self.state.chunked = Some(Chunked {
                cmd: cmd.to_string(),
                cmd_ref: cmd_ref.map(str::to_string),
                source: source.clone(),
                format: format.clone(),
                ty: ty.clone(),
                declared_size: declared,
                data: String::new(),
            });
        }
        let Some(ch) = self.state.chunked.as_mut() else {
            return Chunk::Mismatch("no object in progress".into());
        };
        if ch.data.len() + data.len() > MAX_LARGE_OBJECT {
            self.state.chunked = None;
            tracing::warn!(device_id = %self.device.device_id, limit = MAX_LARGE_OBJECT, "large object over the bound");
            return Chunk::Mismatch(format!("object larger than {MAX_LARGE_OBJECT} bytes (424)"));
        }
        ch.data.push_str(data);
        if item.more_data {
            return Chunk::More;
        }
        let Some(done) = self.state.chunked.take() else {
            return Chunk::Mismatch("no object in progress".into());
        };
        if done
            .declared_size
            .is_some_and(|n| n != done.data.len() as u64)
        {
            tracing::warn!(device_id = %self.device.device_id, declared = ?done.declared_size, got = done.data.len(), "large object size mismatch");
            return Chunk::Mismatch(format!(
                "size mismatch (424): declared {} bytes, received {}",
                done.declared_size.unwrap_or_default(),
                done.data.len()
            ));
        }
        Chunk::Whole(Some(done.data), done.format, done.ty)
    }

    /// A new item arrived while the large object `old` was incomplete: the old one is dropped,
    /// the device gets Alert 1225 (end of data for chunked object not received, MS-MDM
    /// 2.2.7.2; OMA DM 1.2) naming it, and a Get whose Results it was fails.
    fn interrupted(&mut self, old: Chunked) {
        tracing::warn!(device_id = %self.device.device_id, cmd = %old.cmd, source = ?old.source, received = old.data.len(), "new item before the previous large object ended; Alert 1225");
        let id = self.state.next_id();
        let item = Item {
            source: old.source.clone().map(Location::new),
            ..Item::default()
        };
        self.alerts.push(Command::Alert(Alert {
            cmd_id: Some(id.into()),
            data: Some("1225".into()),
            items: vec![item].into(),
            ..Alert::default()
        }));
        let target = old
            .cmd_ref
            .as_deref()
            .and_then(|r| self.state.outstanding.get(r.trim()))
            .map(|o| o.command_id.clone());
        if let Some(id) = target {
            if let Err(e) = self.results_lost(
                &id,
                "a new object started before the end of this one (Alert 1225)",
            ) {
                tracing::error!(device_id = %self.device.device_id, error = %e, "could not record lost results");
            }
        }
    }

    /// Adds queued commands that fit in `budget` bytes; returns how many were added.
    ///
    /// The reply never exceeds `budget` because of a queued command: one that does not fit
    /// waits for the next message; a single-item `Add`/`Replace`/`Exec` goes as a large object
    /// in chunks sized by their written (escaped) length; a command that cannot be chunked
    /// (`Atomic`, `Sequence`, several items) and would not fit even in a reply holding nothing
    /// else is never sent: it fails with an `error` saying so.
    fn add_queued(
        &mut self,
        reply: &mut SyncMl<'static>,
        budget: usize,
    ) -> Result<usize, StoreError> {
        let mut size = syncml::written_len(reply);
        // A quiet reply: header, SyncHdr Status, one more Status (for the Results of the
        // keep-alive Get) and Final. What fits there is sent in this session.
        let quiet = size
            - reply
                .body
                .commands
                .iter()
                .skip(1)
                .map(Command::written_len)
                .sum::<usize>()
            + QUIET_STATUS_LEN;
        if size > budget {
            tracing::warn!(device_id = %self.device.device_id, size, budget, "Statuses alone exceed the device's MaxMsgSize; no command added");
            return Ok(0);
        }
        let mut sent = 0;
        if let Some(sending) = self.state.sending.clone() {
            let k = self.next_chunk(reply, sending, budget - size)?;
            return Ok(if k > 0 {
                k
            } else if self.state.sending.is_some() {
                // The next chunk did not fit this message: keep the session going.
                self.keep_alive(reply, size, budget)
            } else {
                // Abandoned (not acknowledged, answered or gone): the session ends here.
                0
            });
        }
        // (A finished large object's Status cleared `sending`: other commands follow.)
        let user_ok = self.device.login_status.as_deref() == Some("user");
        let queued = self.app.store.queued(&self.device.device_id)?;
        for stored in queued {
            if sent >= MAX_COMMANDS_PER_MESSAGE {
                break;
            }
            // Take this round's view of the command if it changed (e.g. requeued or answered).
            let id = stored.command_id.clone();
            self.track(stored);
            let Some(c) = self.commands.get(&id).cloned() else {
                continue;
            };
            if c.state != CommandState::Pending || (c.user_scoped && !user_ok) {
                continue;
            }
            let text = self.rendered(&c);
            let mut cmds = match syncml::parse_fragment(text.as_bytes()) {
                Ok(v) => v.into_iter().map(Command::into_owned).collect::<Vec<_>>(),
                Err(e) => {
                    tracing::error!(command_id = %c.command_id, error = %e, "stored command no longer parses; failing it");
                    let mut f = c.clone();
                    f.state = CommandState::Failed;
                    f.status = Some(StatusCode::BAD_REQUEST.0);
                    f.completed_at = Some(self.now);
                    self.commands.insert(f.command_id.clone(), f);
                    continue;
                }
            };
            let mut snapshot = self.state.clone();
            for cmd in cmds.iter_mut() {
                assign_ids(cmd, &mut snapshot, &c.command_id, true);
            }
            let n: usize = cmds.iter().map(Command::written_len).sum();
            if size + n <= budget {
                self.state = snapshot;
                size += n;
                sent += 1;
                let mut c = c;
                c.inner = cmds.iter().flat_map(inner_of).collect();
                reply.body.commands.extend(cmds);
                self.mark_sent(c);
                continue;
            }
            if sent > 0 {
                break;
            }
            if chunkable(&cmds) {
                let first = Sending {
                    command_id: c.command_id.clone(),
                    offset: 0,
                    awaiting: None,
                };
                let k = self.next_chunk(reply, first, budget - size)?;
                if k > 0 {
                    self.mark_sent(c);
                    return Ok(k);
                }
                if let Some(base) = cmds.first() {
                    if first_chunk_fits(base, &self.state, budget.saturating_sub(quiet)) {
                        return Ok(self.keep_alive(reply, size, budget));
                    }
                }
                self.too_large(c, n, budget, "not even one chunk of it fits");
                continue;
            }
            if quiet + n <= budget {
                return Ok(self.keep_alive(reply, size, budget));
            }
            self.too_large(c, n, budget, "an Atomic, a Sequence or a command with several items cannot be sent in chunks; split it");
        }
        Ok(sent)
    }

    /// The next queued command fits in a quiet reply but not in this one: a read-only `Get`
    /// of `./DevInfo/DmV` keeps the session going, so the device's next message (Statuses
    /// only) leaves room for it. Returns 1 if it was added.
    fn keep_alive(&mut self, reply: &mut SyncMl<'static>, size: usize, budget: usize) -> usize {
        let item = Item {
            target: Some(Location::new(KEEP_ALIVE_URI)),
            ..Item::default()
        };
        let get = Command::Get(syncml::ItemCommand::new(
            (self.state.next_cmd_id + 1).to_string(),
            [item],
        ));
        if size + get.written_len() > budget {
            return 0;
        }
        self.state.next_id();
        tracing::debug!(device_id = %self.device.device_id, size, budget, "no room for the next command in this reply; keep-alive Get");
        reply.body.commands.push(get);
        1
    }

    /// Fails a command that can never be sent within the device's `MaxMsgSize`.
    fn too_large(&mut self, mut c: CommandRecord, n: usize, budget: usize, why: &str) {
        tracing::warn!(device_id = %self.device.device_id, command_id = %c.command_id, size = n, budget, why, "command larger than the device's MaxMsgSize; not sent");
        c.state = CommandState::Failed;
        c.error = Some(format!(
            "not sent: {n} bytes as written, larger than the device's MaxMsgSize of {budget} bytes ({why})"
        ));
        c.completed_at = Some(self.now);
        self.commands.insert(c.command_id.clone(), c);
    }

    fn mark_sent(&mut self, mut c: CommandRecord) {
        c.state = CommandState::Sent;
        c.sent_at = Some(self.now);
        c.send_count += 1;
        self.commands.insert(c.command_id.clone(), c);
    }

    /// Sends the next chunk of a large object (alone in its message) if one fits in `avail`
    /// bytes; returns 1 when it did.
    /// The command's text as sent: an app install command gets its download URL signed for
    /// this device ([`crate::apps::deliver::render`]); the same text for every chunk of it.
    fn rendered<'t>(&self, c: &'t CommandRecord) -> std::borrow::Cow<'t, str> {
        match crate::apps::deliver::render(
            self.app,
            &self.device.device_id,
            &c.command_id,
            &c.syncml,
            self.now,
        ) {
            Some(s) => std::borrow::Cow::Owned(s),
            None => std::borrow::Cow::Borrowed(&c.syncml),
        }
    }

    fn next_chunk(
        &mut self,
        reply: &mut SyncMl<'static>,
        sending: Sending,
        avail: usize,
    ) -> Result<usize, StoreError> {
        let rec = self.command(&sending.command_id)?.cloned();
        let base = rec
            .as_ref()
            .filter(|c| !c.state.is_terminal())
            .and_then(|c| {
                let text = self.rendered(c);
                syncml::parse_fragment(text.as_bytes())
                    .ok()
                    .and_then(|mut v| (v.len() == 1).then(|| v.remove(0).into_owned()))
            });
        let Some(mut base) = base else {
            // Answered (e.g. failed), cancelled or gone: stop sending it.
            self.state.sending = None;
            return Ok(0);
        };
        if sending.awaiting.is_some() {
            // The device's message did not acknowledge the last chunk: sending more would hand
            // it a gap. The object is abandoned; the command goes out again next session.
            tracing::warn!(device_id = %self.device.device_id, command_id = %sending.command_id, "chunk not acknowledged; large object abandoned for this session");
            self.state.sending = None;
            return Ok(0);
        }
        // Measure with the CmdID it will carry (the next one), so the size is exact.
        base.set_cmd_id((self.state.next_cmd_id + 1).to_string());
        let Some((mut chunk, end, total)) = chunk_of(&base, sending.offset, avail) else {
            tracing::debug!(device_id = %self.device.device_id, offset = sending.offset, avail, "no room for a chunk in this message");
            return Ok(0);
        };
        assign_ids(&mut chunk, &mut self.state, &sending.command_id, true);
        let chunk_id = chunk.cmd_id().unwrap_or_default().to_string();
        reply.body.commands.push(chunk);
        self.state.sending = Some(Sending {
            command_id: sending.command_id,
            offset: sending.offset,
            awaiting: Some((chunk_id, end, end >= total)),
        });
        tracing::debug!(device_id = %self.device.device_id, offset = sending.offset, end, total, "sent a chunk of a large object");
        Ok(1)
    }
}

/// Whether a command can go as a large object: one `Add`/`Replace`/`Exec` with one data item.
fn chunkable(cmds: &[Command<'_>]) -> bool {
    matches!(cmds, [Command::Add(c) | Command::Replace(c) | Command::Exec(c)]
        if c.items.len() == 1 && c.items[0].data.as_deref().is_some_and(|d| !d.is_empty()))
}

/// Whether the first chunk of `base` (carrying the next CmdID of `st`) fits in `avail` bytes.
fn first_chunk_fits(base: &Command<'static>, st: &SessionState, avail: usize) -> bool {
    let mut b = base.clone();
    b.set_cmd_id((st.next_cmd_id + 1).to_string());
    chunk_of(&b, 0, avail).is_some()
}

/// The largest chunk of `base`'s single item starting at byte `offset` whose written (escaped)
/// length, CmdID included as `base` carries it, is at most `avail` bytes; `None` when not even
/// one character fits. Returns it with its end and the total.
fn chunk_of(
    base: &Command<'static>,
    offset: usize,
    avail: usize,
) -> Option<(Command<'static>, usize, usize)> {
    let data = base.items().first()?.data.as_deref()?.to_string();
    let total = data.len();
    if offset >= total || !data.is_char_boundary(offset) {
        return None;
    }
    let make = |end: usize| {
        let mut c = base.clone();
        if let Command::Add(ic) | Command::Replace(ic) | Command::Exec(ic) = &mut c {
            if let Some(item) = ic.items.as_mut_slice().first_mut() {
                item.data = Some(data[offset..end].to_string().into());
                item.more_data = end < total;
                if offset == 0 {
                    let meta = item.meta.get_or_insert_with(Meta::default);
                    meta.size = Some(total.to_string().into());
                }
            }
        }
        c
    };
    let floor = |mut i: usize| {
        while i > offset && !data.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    // The written length grows with `end` except where the last chunk drops `MoreData`:
    // search the non-final chunks, then try the whole rest.
    if make(total).written_len() <= avail {
        return Some((make(total), total, total));
    }
    let (mut lo, mut hi) = (offset, total);
    while lo < hi {
        let mid = floor(lo + (hi - lo).div_ceil(2));
        if mid <= lo {
            // No char boundary strictly between lo and hi other than lo: step to the next one.
            let mut next = lo + 1;
            while next < total && !data.is_char_boundary(next) {
                next += 1;
            }
            if next <= hi && make(next).written_len() <= avail {
                lo = next;
                continue;
            }
            break;
        }
        if make(mid).written_len() <= avail {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let end = floor(lo);
    if end == offset {
        return None;
    }
    Some((make(end), end, total))
}

/// The nested commands of a group as sent (CmdIDs assigned), in document order.
fn inner_of(cmd: &Command<'_>) -> Vec<InnerStatus> {
    let mut out = Vec::new();
    if let Command::Atomic(g) | Command::Sequence(g) = cmd {
        for c in g.commands.iter() {
            let targets = match c {
                Command::Atomic(_) | Command::Sequence(_) => Vec::new(),
                c => c
                    .items()
                    .iter()
                    .filter_map(|i| i.target.as_ref())
                    .map(|t| t.loc_uri.trim().to_string())
                    .collect(),
            };
            out.push(InnerStatus {
                cmd_id: c.cmd_id().unwrap_or_default().to_string(),
                verb: c.name().to_string(),
                targets,
                status: None,
            });
            out.extend(inner_of(c));
        }
    }
    out
}

enum Chunk {
    More,
    /// The object is unusable; why (for the command's `error`).
    Mismatch(String),
    Whole(Option<String>, Option<String>, Option<String>),
}

/// Bytes a result item holds (its LocURI and data).
fn result_bytes(r: &ResultItem) -> usize {
    r.target.as_ref().map_or(0, String::len) + r.data.as_ref().map_or(0, String::len)
}

/// An `Atomic`/`Sequence` answered 2xx whose nested commands did not all succeed is not done.
fn settle_group(c: &mut CommandRecord) {
    if c.state == CommandState::Done && c.inner.iter().any(InnerStatus::failed) {
        c.state = CommandState::Failed;
    }
}

/// The queued commands a reply carries, in its order (each once).
fn delivered_ids(reply: &SyncMl<'_>, st: &SessionState) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in &reply.body.commands {
        let Some(o) = c.cmd_id().and_then(|id| st.outstanding.get(id)) else {
            continue;
        };
        if !out.contains(&o.command_id) {
            out.push(o.command_id.clone());
        }
    }
    out
}

fn assign_ids(cmd: &mut Command<'static>, st: &mut SessionState, command_id: &str, primary: bool) {
    let id = st.next_id();
    st.outstanding.insert(
        id.clone(),
        Outstanding {
            command_id: command_id.to_string(),
            primary,
        },
    );
    cmd.set_cmd_id(id);
    if let Command::Atomic(c) | Command::Sequence(c) = cmd {
        for inner in c.commands.iter_mut() {
            assign_ids(inner, st, command_id, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syncml::ItemCommand;

    fn replace(data: &str, cmd_id: Option<&str>) -> Command<'static> {
        let item = Item {
            target: Some(Location::new("./Vendor/MSFT/Policy/Config/Big/Blob")),
            data: Some(data.to_string().into()),
            ..Item::default()
        };
        let mut c = ItemCommand::new("1", [item]);
        c.cmd_id = cmd_id.map(|s| s.to_string().into());
        Command::Replace(c)
    }

    /// Every chunk fits exactly (written, escaped length with its CmdID) and is the largest that
    /// does; the chunks put back together are the data.
    #[test]
    fn chunks_fill_the_room_exactly_and_reassemble() {
        let mixed: String = (0..300).map(|i| format!("<a v=\"{i}&\"/>é\r")).collect();
        for data in ["x".repeat(5000), "&".repeat(3000), mixed] {
            for cmd_id in [Some("7"), Some("123456"), None] {
                for avail in [250, 300, 777, 1024, 2500] {
                    let base = replace(&data, cmd_id);
                    let (mut offset, mut whole) = (0, String::new());
                    while offset < data.len() {
                        let Some((c, end, total)) = chunk_of(&base, offset, avail) else {
                            panic!("no chunk at {offset} in {avail}")
                        };
                        assert_eq!(total, data.len());
                        assert!(c.written_len() <= avail, "{} > {avail}", c.written_len());
                        if end + 4 < total {
                            let mut next = end + 1;
                            while !data.is_char_boundary(next) {
                                next += 1;
                            }
                            let bigger = chunk_of(&base, offset, usize::MAX)
                                .map(|_| {
                                    let mut b = c.clone();
                                    if let Command::Replace(ic) = &mut b {
                                        ic.items.as_mut_slice()[0].data =
                                            Some(data[offset..next].to_string().into());
                                    }
                                    b.written_len()
                                })
                                .unwrap_or(0);
                            assert!(
                                bigger > avail,
                                "chunk {offset}..{end} of {total} ({:?}, {cmd_id:?}, {avail}) could be longer: {} then {bigger}",
                                &data[..4],
                                c.written_len()
                            );
                        }
                        whole.push_str(c.items()[0].data.as_deref().unwrap_or(""));
                        offset = end;
                    }
                    assert_eq!(whole, data);
                }
            }
        }
        // Not one character fits: no chunk (and no floor that overshoots).
        assert!(chunk_of(&replace(&"x".repeat(100), Some("1")), 0, 100).is_none());
    }
}
