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
//!   such) or `Failed` (the code kept). A command sent in a session that ended without its
//!   Status goes out again in the device's next session; one the device answered never does.
//! * User-scoped commands (`./User/...`) wait until the device reports LoginStatus `user`.
//! * The device's `MaxMsgSize` is honoured: what does not fit waits for the next message.
//! * Large objects from the device (`MoreData`) are reassembled (213 per chunk, Alert 1222 when
//!   the message lacks `Final`, 424 on a size mismatch).
//! * A single-item `Add`/`Replace`/`Exec` too large for the device's `MaxMsgSize` is sent as a
//!   large object (OMA RepPro §7): one chunk per message, `Meta/Size` on the first, `MoreData` on
//!   all but the last; the device answers 213 per chunk and the last chunk's Status completes it.
//! * A retransmitted message (same `MsgID`) gets the same reply without being applied twice.

use std::collections::BTreeMap;

use crate::app::App;
use crate::config::paths;
use crate::mdm::identity::DeviceAuthenticated;
use crate::mdm::session::{Chunked, Outstanding, Sending, SessionState};
use crate::store::{
    clip_bytes, CommandRecord, CommandState, Device, DeviceAlert, DeviceState, ResultItem, Round,
    StoreError,
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
/// Longest `Data` of a kept generic alert, in bytes (longer ones are cut).
pub const MAX_ALERT_DATA: usize = 1024;
/// Longest `Meta/Type` or `Source/LocURI` of a kept generic alert, in bytes.
pub const MAX_ALERT_FIELD: usize = 256;
/// Longest LoginStatus kept (Windows sends `user`, `others`, `none` or `unknown`).
pub const MAX_LOGIN_STATUS: usize = 16;
/// Largest object reassembled from chunks.
pub const MAX_LARGE_OBJECT: usize = 16 * 1024 * 1024;

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
}

impl ManageError {
    /// HTTP status of the failure.
    pub fn http_status(&self) -> u16 {
        match self {
            ManageError::Parse(_) | ManageError::Header { .. } => 400,
            ManageError::WrongDevice { .. } => 403,
            ManageError::Store(_) => 500,
        }
    }
}

/// Runs one round for an authenticated device; returns the reply body.
pub fn handle(app: &App, auth: &DeviceAuthenticated, body: &[u8]) -> Result<Vec<u8>, ManageError> {
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
    let now = app.clock.now_unix();

    let stored = app
        .store
        .get_session(device_id, &session_id)?
        .and_then(|b| serde_json::from_slice::<SessionState>(&b).ok());
    if let Some(st) = &stored {
        if st.last_client_msg == client_msg {
            if let Some(reply) = &st.last_reply {
                tracing::info!(
                    device_id,
                    session_id,
                    msg_id = client_msg,
                    "retransmitted message: same reply"
                );
                return Ok(reply.clone().into_bytes());
            }
        }
    }
    let new_session = client_msg == 1 || stored.is_none();
    let mut round = RoundBuilder {
        app,
        device: auth.device().clone(),
        state: if client_msg == 1 {
            SessionState::default()
        } else {
            stored.unwrap_or_default()
        },
        commands: BTreeMap::new(),
        revoke: Vec::new(),
        reply: Vec::new(),
        client_msg,
        now,
        end_session: false,
    };
    round.device.last_seen = Some(now);
    if new_session {
        round.requeue_unanswered()?;
        // A device runs one session at a time: state left by sessions it abandoned goes.
        app.store.drop_sessions(device_id, &session_id)?;
    }
    round.reply.push(status_cmd(
        &mut round.state,
        client_msg,
        "0",
        "SyncHdr",
        StatusCode::OK,
    ));
    let mut wants_next_message = false;
    for cmd in &msg.body.commands {
        if round.apply(cmd)? {
            wants_next_message = true;
        }
    }
    // Autopilot links only on the Results of the server's own Gets (issue 13).
    let touched: Vec<&CommandRecord> = round.commands.values().collect();
    let autopilot_answered = crate::autopilot::link::touched(&touched);
    if let Err(e) = crate::autopilot::link::on_round(app, &mut round.device, &touched) {
        tracing::error!(device_id, error = %e, "Autopilot link failed; retried when the serial is reported again");
    }
    // Outstanding CmdIDs are kept for the whole session: a large Results may arrive messages
    // after the Status of its Get.
    let hdr = SyncHdr {
        ver_dtd: "1.2".into(),
        ver_proto: "DM/1.2".into(),
        session_id: session_id.clone().into(),
        msg_id: (round.state.server_msg + 1).to_string().into(),
        target: Location::new(device_id.to_string()),
        source: Location::new(app.cfg.public_url.join(paths::MANAGEMENT)),
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
    if !device_has_more && !round.end_session && round.device.state == DeviceState::Enrolled {
        let budget = msg
            .hdr
            .max_msg_size()
            .map(|n| n as usize)
            .unwrap_or(DEFAULT_MAX_MSG_SIZE)
            .max(1024);
        sent = round.add_queued(&mut reply, budget)?;
    }
    round.state.server_msg += 1;
    round.state.last_client_msg = client_msg;
    let mut out = Vec::with_capacity(syncml::written_len(&reply));
    syncml::write(&reply, &mut out);
    let session_over = round.end_session || (sent == 0 && !device_has_more);
    let session = if session_over {
        None
    } else {
        round.state.last_reply = Some(String::from_utf8_lossy(&out).into_owned());
        Some(serde_json::to_vec(&round.state).unwrap_or_default())
    };
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
    let changed = crate::groups::attributes_changed(auth.device(), &round.device);
    let convert =
        autopilot_answered || crate::autopilot::convert::reported(auth.device(), &round.device);
    let store_round = Round {
        device: Some(round.device),
        commands: round.commands.into_values().collect(),
        session: Some((device_id.to_string(), session_id, session)),
        revoke: round.revoke,
    };
    app.store.commit_round(&store_round, now)?;
    if changed {
        let _ = crate::groups::on_device_changed(app, device_id); // groups + profiles (errors logged)
    }
    if convert {
        if let Err(e) = crate::autopilot::convert::after_round(app, device_id) {
            tracing::error!(device_id, error = %e, "Autopilot conversion failed; retried at the next report");
        }
    }
    Ok(out)
}

struct RoundBuilder<'a> {
    app: &'a App,
    device: Device,
    state: SessionState,
    /// Commands touched this round, by id (written back in the round's transaction).
    commands: BTreeMap<String, CommandRecord>,
    revoke: Vec<(String, String)>,
    reply: Vec<Command<'static>>,
    client_msg: u32,
    now: i64,
    end_session: bool,
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
                Some(c) => {
                    self.commands.insert(id.to_string(), c);
                }
                None => return Ok(None),
            }
        }
        Ok(self.commands.get_mut(id))
    }

    /// A new session: commands sent before without an answer go out again.
    fn requeue_unanswered(&mut self) -> Result<(), StoreError> {
        for mut c in self.app.store.queued(&self.device.device_id)? {
            if c.state == CommandState::Sent {
                c.state = CommandState::Pending;
                self.commands.insert(c.command_id.clone(), c);
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
                let mut more = false;
                for item in r.items.iter() {
                    match self.reassemble("Results", Some(&r.cmd_ref), item, r.meta.as_ref()) {
                        Chunk::More => more = true,
                        Chunk::Mismatch => {
                            self.ack(r.cmd_id.as_deref(), "Results", StatusCode::SIZE_MISMATCH);
                            return Ok(false);
                        }
                        Chunk::Whole(data, format, ty) => {
                            let source = item.source.as_ref().map(|s| s.loc_uri.to_string());
                            if let Some(src) = &source {
                                self.inventory(src, data.as_deref());
                            }
                            let target = self.state.outstanding.get(r.cmd_ref.trim()).cloned();
                            if let Some(o) = target {
                                if let Some(c) = self.command(&o.command_id)? {
                                    c.results.push(ResultItem {
                                        target: source,
                                        format,
                                        ty,
                                        data,
                                    });
                                }
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
                        Chunk::Mismatch => {
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
        if !o.primary {
            return Ok(());
        }
        let code = s.code().map(|c| c.0);
        if code == Some(StatusCode::CHUNKED_ITEM_ACCEPTED.0) {
            // A chunk of a large object was buffered; the last chunk's Status completes it.
            return Ok(());
        }
        let now = self.now;
        if let Some(c) = self.command(&o.command_id)? {
            if c.state.is_terminal() {
                return Ok(());
            }
            c.status = code;
            c.completed_at = Some(now);
            c.state = match s.code() {
                Some(code) if code.is_success() => CommandState::Done,
                _ => CommandState::Failed,
            };
            if code == Some(418) {
                tracing::warn!(device_id = %c.device_id, command_id = %c.command_id, "device reports 418 already exists; not retried");
            }
        }
        Ok(())
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
                    }
                }
            }
            Some(1226) => {
                for item in a.items.iter() {
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
                    }
                }
            }
            Some(1223) => {
                tracing::info!(device_id = %self.device.device_id, "device aborted the session (1223)");
                self.end_session = true;
            }
            _ => {}
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
        if !item.more_data && !continuing {
            return Chunk::Whole(item.data.as_deref().map(str::to_string), format, ty);
        }
        if !continuing {
            if self.state.chunked.is_some() {
                tracing::warn!(device_id = %self.device.device_id, "new large object before the previous one ended; dropping the old one");
            }
            let declared = item
                .meta
                .as_ref()
                .and_then(Meta::size)
                .or_else(|| cmd_meta.and_then(Meta::size));
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
            return Chunk::Mismatch;
        };
        if ch.data.len() + data.len() > MAX_LARGE_OBJECT {
            self.state.chunked = None;
            return Chunk::Mismatch;
        }
        ch.data.push_str(data);
        if item.more_data {
            return Chunk::More;
        }
        let Some(done) = self.state.chunked.take() else {
            return Chunk::Mismatch;
        };
        if done
            .declared_size
            .is_some_and(|n| n != done.data.len() as u64)
        {
            tracing::warn!(device_id = %self.device.device_id, declared = ?done.declared_size, got = done.data.len(), "large object size mismatch");
            return Chunk::Mismatch;
        }
        Chunk::Whole(Some(done.data), done.format, done.ty)
    }

    /// Adds queued commands that fit in `budget` bytes; returns how many were added.
    fn add_queued(
        &mut self,
        reply: &mut SyncMl<'static>,
        budget: usize,
    ) -> Result<usize, StoreError> {
        let mut size = syncml::written_len(reply);
        let mut sent = 0;
        if let Some(sending) = self.state.sending.clone() {
            return self.next_chunk(reply, sending, budget.saturating_sub(size));
        }
        let user_ok = self.device.login_status.as_deref() == Some("user");
        let queued = self.app.store.queued(&self.device.device_id)?;
        for stored in queued {
            if sent >= MAX_COMMANDS_PER_MESSAGE {
                break;
            }
            // Take this round's view of the command if it changed (e.g. requeued or answered).
            let c = self
                .commands
                .get(&stored.command_id)
                .cloned()
                .unwrap_or(stored);
            if c.state != CommandState::Pending || (c.user_scoped && !user_ok) {
                continue;
            }
            let mut cmds = match syncml::parse_fragment(c.syncml.as_bytes()) {
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
            if size + n > budget && sent > 0 {
                break;
            }
            if size + n > budget && chunkable(&cmds) {
                let id = c.command_id.clone();
                self.mark_sent(c);
                let first = Sending {
                    command_id: id,
                    offset: 0,
                };
                return self.next_chunk(reply, first, budget.saturating_sub(size));
            }
            if size + n > budget {
                tracing::warn!(command_id = %c.command_id, size = n, budget, "command larger than the device's MaxMsgSize; sending it alone");
            }
            self.state = snapshot;
            size += n;
            sent += 1;
            reply.body.commands.extend(cmds);
            self.mark_sent(c);
        }
        Ok(sent)
    }

    fn mark_sent(&mut self, mut c: CommandRecord) {
        c.state = CommandState::Sent;
        c.sent_at = Some(self.now);
        c.send_count += 1;
        self.commands.insert(c.command_id.clone(), c);
    }

    /// Sends the next chunk of a large object (alone in its message).
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
            .and_then(|c| syncml::parse_fragment(c.syncml.as_bytes()).ok())
            .and_then(|mut v| (v.len() == 1).then(|| v.remove(0).into_owned()));
        let Some(base) = base else {
            // Answered (e.g. failed), cancelled or gone: stop sending it.
            self.state.sending = None;
            return Ok(0);
        };
        let Some((mut chunk, end, total)) = chunk_of(&base, sending.offset, avail) else {
            self.state.sending = None;
            return Ok(0);
        };
        assign_ids(&mut chunk, &mut self.state, &sending.command_id, true);
        reply.body.commands.push(chunk);
        self.state.sending = (end < total).then_some(Sending {
            command_id: sending.command_id,
            offset: end,
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

/// The chunk of `base`'s single item starting at byte `offset` that fits in `avail` bytes (at
/// least 1 KiB of data so a session always progresses). Returns it with its end and the total.
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
    // Room for the CmdID assigned afterwards.
    let avail = avail.saturating_sub(12);
    let floor = |mut i: usize| {
        while i > offset && !data.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let (mut lo, mut hi) = (offset, total);
    while lo < hi {
        let mid = floor(lo + (hi - lo).div_ceil(2));
        if mid <= lo {
            break;
        }
        if make(mid).written_len() <= avail {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let mut end = floor(lo.max((offset + 1024).min(total)).min(total));
    if end == offset {
        end = total.min(offset + 4);
        while !data.is_char_boundary(end) {
            end += 1;
        }
    }
    Some((make(end), end, total))
}

enum Chunk {
    More,
    Mismatch,
    Whole(Option<String>, Option<String>, Option<String>),
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
