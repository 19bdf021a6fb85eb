//! Admin commands for a device: validation of what an admin asks for, turned into a
//! [`CommandRecord`] holding a canonical SyncML fragment (written by our own codec), and queued.
//!
//! Two request forms (`POST /api/v1/devices/{id}/commands`):
//! * `{"verb": "Replace", "target": "./Vendor/MSFT/...", "format": "bool", "type": "text/plain",
//!   "data": "true"}`, or with `"items": [{"target", "format", "type", "data"}, ...]`;
//! * `{"syncml": "<Replace>…</Replace>"}`: one command (`Atomic`/`Sequence` to group), parsed
//!   with the SyncML codec; CmdIDs are ours to assign, whatever the fragment says.
//!
//! Optional `command_id` (client-chosen, for idempotency: the same id twice queues once).

use serde::Deserialize;

use crate::app::App;
use crate::store::tx::Refusal;
use crate::store::{CommandRecord, CommandState, Enqueued, StoreError};
use crate::syncml::{self, Command, Item, ItemCommand, Location, Meta};

/// The TenantLockdown CSP node (PROTOCOL.md §7).
pub const TENANT_LOCKDOWN_URI: &str = "./Vendor/MSFT/TenantLockdown/RequireNetworkInOOBE";

/// A command as an admin sends it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCommand {
    /// `Get`, `Add`, `Replace`, `Delete` or `Exec`.
    pub verb: Option<String>,
    /// Target LocURI (single-item form).
    pub target: Option<String>,
    /// `Meta/Format` (`chr`, `int`, `bool`, `b64`, `xml`, `node`, `null`…).
    pub format: Option<String>,
    /// `Meta/Type` (MIME type).
    #[serde(rename = "type")]
    pub ty: Option<String>,
    /// `Data`.
    pub data: Option<String>,
    /// Several items instead of `target`/`format`/`type`/`data`.
    pub items: Option<Vec<NewItem>>,
    /// A SyncML fragment instead of the fields above.
    pub syncml: Option<String>,
    /// Client-chosen id (idempotency key).
    pub command_id: Option<String>,
}

/// One item of a [`NewCommand`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    /// Target LocURI.
    pub target: String,
    /// `Meta/Format`.
    pub format: Option<String>,
    /// `Meta/Type`.
    #[serde(rename = "type")]
    pub ty: Option<String>,
    /// `Data`.
    pub data: Option<String>,
}

/// Why a command cannot be queued.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The request is invalid; the reason says how.
    #[error("{reason}")]
    Invalid {
        /// Why.
        reason: String,
    },
    /// No such device.
    #[error("device {device_id} not found")]
    UnknownDevice {
        /// DeviceID.
        device_id: String,
    },
    /// The device is not enrolled any more.
    #[error("device {device_id} is not enrolled")]
    NotEnrolled {
        /// DeviceID.
        device_id: String,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

fn invalid(reason: impl Into<String>) -> CommandError {
    CommandError::Invalid {
        reason: reason.into(),
    }
}

/// Checks a LocURI against the MS-MDM rules (PROTOCOL.md §6): not empty, no leading `/`, `.` only
/// as the first segment, no empty or `*` segment, no `..`, no control characters or spaces.
pub fn validate_loc_uri(uri: &str) -> Result<(), CommandError> {
    if uri.is_empty() || uri.len() > 1024 {
        return Err(invalid("target must be 1-1024 characters"));
    }
    if uri.starts_with('/') {
        return Err(invalid(format!("target {uri:?} must not start with '/'")));
    }
    if uri.chars().any(|c| c.is_control() || c == ' ') {
        return Err(invalid(format!(
            "target {uri:?} contains spaces or control characters"
        )));
    }
    for (i, seg) in uri.split('/').enumerate() {
        if seg.is_empty() || seg == "*" || seg == ".." || (seg == "." && i > 0) {
            return Err(invalid(format!(
                "target {uri:?} has an invalid segment {seg:?}"
            )));
        }
    }
    Ok(())
}

fn validate_command_id(id: &str) -> Result<(), CommandError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "command_id must be 1-128 characters of [A-Za-z0-9-_.:]",
        ))
    }
}

fn targets<'c>(cmd: &'c Command<'_>, out: &mut Vec<&'c str>) {
    match cmd {
        Command::Atomic(c) | Command::Sequence(c) => {
            c.commands.iter().for_each(|i| targets(i, out))
        }
        c => out.extend(
            c.items()
                .iter()
                .filter_map(|i| i.target.as_ref())
                .map(|t| t.loc_uri.as_ref()),
        ),
    }
}

fn check_command(cmd: &Command<'_>, depth: usize) -> Result<(), CommandError> {
    match cmd {
        Command::Get(c)
        | Command::Add(c)
        | Command::Replace(c)
        | Command::Delete(c)
        | Command::Exec(c) => {
            if c.items.is_empty() {
                return Err(invalid(format!("{} needs at least one Item", cmd.name())));
            }
            for i in c.items.iter() {
                let t = i
                    .target
                    .as_ref()
                    .ok_or_else(|| invalid(format!("every {} Item needs a Target", cmd.name())))?;
                validate_loc_uri(t.loc_uri.trim())?;
            }
            Ok(())
        }
        Command::Atomic(c) | Command::Sequence(c) => {
            if depth > 0 && matches!(cmd, Command::Atomic(_)) {
                return Err(invalid(
                    "nested Atomic is not supported by Windows (500/507)",
                ));
            }
            if c.commands.is_empty() {
                return Err(invalid(format!(
                    "{} needs at least one command",
                    cmd.name()
                )));
            }
            for inner in &c.commands {
                if matches!(cmd, Command::Atomic(_)) && matches!(inner, Command::Get(_)) {
                    return Err(invalid(
                        "Get inside Atomic is not allowed (Windows answers 500)",
                    ));
                }
                check_command(inner, depth + 1)?;
            }
            Ok(())
        }
        other => Err(invalid(format!(
            "{} is not a command a server sends",
            other.name()
        ))),
    }
}

/// Turns an admin request into a command record for `device_id` (not yet queued).
pub fn prepare(device_id: &str, req: NewCommand, now: i64) -> Result<CommandRecord, CommandError> {
    let cmd: Command<'static> = if let Some(xml) = &req.syncml {
        if req.verb.is_some() || req.target.is_some() || req.items.is_some() || req.data.is_some() {
            return Err(invalid("give either syncml or verb/target/items, not both"));
        }
        let mut cmds =
            syncml::parse_fragment(xml.as_bytes()).map_err(|e| invalid(format!("syncml: {e}")))?;
        if cmds.len() != 1 {
            return Err(invalid(format!(
                "syncml must hold exactly one command (group several in <Atomic> or <Sequence>), found {}",
                cmds.len()
            )));
        }
        cmds.remove(0).into_owned()
    } else {
        let verb = req
            .verb
            .as_deref()
            .ok_or_else(|| invalid("verb (or syncml) is required"))?;
        let items: Vec<NewItem> = match (&req.items, &req.target) {
            (Some(_), Some(_)) => return Err(invalid("give either target or items, not both")),
            (Some(items), None) => {
                if req.format.is_some() || req.ty.is_some() || req.data.is_some() {
                    return Err(invalid("with items, put format/type/data inside each item"));
                }
                items.clone()
            }
            (None, Some(t)) => vec![NewItem {
                target: t.clone(),
                format: req.format.clone(),
                ty: req.ty.clone(),
                data: req.data.clone(),
            }],
            (None, None) => return Err(invalid("target (or items) is required")),
        };
        if items.is_empty() {
            return Err(invalid("items must not be empty"));
        }
        build(verb, &items).ok_or_else(|| {
            invalid(format!(
                "verb {verb:?} is not one of Get, Add, Replace, Delete, Exec"
            ))
        })?
    };
    check_command(&cmd, 0)?;
    let mut all = Vec::new();
    targets(&cmd, &mut all);
    let user_scoped = all.iter().any(|t| t.trim().starts_with("./User/"));
    let target = all.first().map(|t| t.trim().to_string());
    let mut xml = Vec::new();
    syncml::write_fragment(std::slice::from_ref(&cmd), &mut xml);
    let command_id = match req.command_id {
        Some(id) => {
            validate_command_id(&id)?;
            id
        }
        None => crate::clock::time_ordered_id(now),
    };
    Ok(CommandRecord {
        command_id,
        device_id: device_id.to_string(),
        seq: 0,
        verb: cmd.name().to_string(),
        target,
        syncml: String::from_utf8_lossy(&xml).into_owned(),
        user_scoped,
        state: CommandState::Pending,
        status: None,
        results: Vec::new(),
        created_at: now,
        sent_at: None,
        completed_at: None,
        send_count: 0,
        ..CommandRecord::default()
    })
}

fn build(verb: &str, items: &[NewItem]) -> Option<Command<'static>> {
    let items: Vec<Item<'static>> = items
        .iter()
        .map(|i| Item {
            target: Some(Location::new(i.target.trim().to_string())),
            meta: (i.format.is_some() || i.ty.is_some()).then(|| Meta {
                format: i.format.clone().map(Into::into),
                ty: i.ty.clone().map(Into::into),
                ..Meta::default()
            }),
            data: i.data.clone().map(Into::into),
            ..Item::default()
        })
        .collect();
    let c = ItemCommand::new("1", items);
    Some(match verb {
        "Get" => Command::Get(c),
        "Add" => Command::Add(c),
        "Replace" => Command::Replace(c),
        "Delete" => Command::Delete(c),
        "Exec" => Command::Exec(c),
        _ => return None,
    })
}

/// Validates and queues a command for an enrolled device.
pub fn enqueue(app: &App, device_id: &str, req: NewCommand) -> Result<Enqueued, CommandError> {
    let dev = app
        .store
        .get_device(device_id)?
        .ok_or_else(|| CommandError::UnknownDevice {
            device_id: device_id.to_string(),
        })?;
    if dev.state != crate::store::DeviceState::Enrolled {
        return Err(CommandError::NotEnrolled {
            device_id: device_id.to_string(),
        });
    }
    let rec = prepare(device_id, req, app.clock.now_unix())?;
    refuse_user_scope_on_bulk(&dev, &rec)?;
    let out = app.store.enqueue(rec)?;
    if let Enqueued::Created(c) = &out {
        tracing::info!(device_id, command_id = %c.command_id, verb = %c.verb, target = ?c.target, "command queued");
    }
    Ok(out)
}

/// Bulk-enrolled devices have no user session of their own: user-scoped commands are refused.
fn refuse_user_scope_on_bulk(
    dev: &crate::store::Device,
    rec: &CommandRecord,
) -> Result<(), CommandError> {
    if dev.bulk && rec.user_scoped {
        return Err(invalid(format!(
            "device {} was bulk-enrolled: it takes device-scope commands only (./User/... refused)",
            dev.device_id
        )));
    }
    Ok(())
}

/// Records the desired TenantLockdown value and queues its Replace (Format `bool`), replacing a
/// still-unanswered TenantLockdown command so the device only ever gets the latest value.
pub fn set_tenant_lockdown(app: &App, device_id: &str, on: bool) -> Result<Enqueued, CommandError> {
    let mut dev = app
        .store
        .get_device(device_id)?
        .ok_or_else(|| CommandError::UnknownDevice {
            device_id: device_id.to_string(),
        })?;
    let now = app.clock.now_unix();
    for c in app.store.queued(device_id)? {
        if c.target.as_deref() == Some(TENANT_LOCKDOWN_URI) && c.state == CommandState::Pending {
            app.store.cancel(device_id, &c.command_id, now)?;
        }
    }
    let out = enqueue(
        app,
        device_id,
        NewCommand {
            verb: Some("Replace".into()),
            target: Some(TENANT_LOCKDOWN_URI.into()),
            format: Some("bool".into()),
            data: Some(on.to_string()),
            ..NewCommand::default()
        },
    )?;
    dev.tenant_lockdown = Some(on);
    app.store.put_device(&dev)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loc_uri_rules() {
        assert!(validate_loc_uri("./Vendor/MSFT/TenantLockdown/RequireNetworkInOOBE").is_ok());
        assert!(validate_loc_uri("./Device/Vendor/MSFT/Policy/Config/Area.Sub/Policy").is_ok());
        for bad in [
            "", "/abs", "./a//b", "./a/*/b", "./a/./b", "./a/../b", "./a b", "./a\n",
        ] {
            assert!(validate_loc_uri(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn field_form_becomes_canonical_syncml() {
        let c = prepare(
            "D",
            NewCommand {
                verb: Some("Replace".into()),
                target: Some(TENANT_LOCKDOWN_URI.into()),
                format: Some("bool".into()),
                data: Some("true".into()),
                command_id: Some("tl-1".into()),
                ..NewCommand::default()
            },
            1,
        )
        .unwrap();
        assert_eq!(c.command_id, "tl-1");
        assert_eq!(c.verb, "Replace");
        assert!(
            c.syncml
                .contains(r#"<Format xmlns="syncml:metinf">bool</Format>"#),
            "{}",
            c.syncml
        );
        assert!(!c.user_scoped);
    }

    #[test]
    fn syncml_form_and_its_rules() {
        let ok = prepare("D", NewCommand { syncml: Some("<Atomic><CmdID>9</CmdID><Replace><CmdID>1</CmdID><Item><Target><LocURI>./User/Vendor/MSFT/Policy/Config/A/B</LocURI></Target><Data>&lt;enabled/&gt;</Data></Item></Replace></Atomic>".into()), ..NewCommand::default() }, 1).unwrap();
        assert_eq!(ok.verb, "Atomic");
        assert!(ok.user_scoped);
        for bad in [
            "<Replace><CmdID>1</CmdID></Replace>",
            "<Get><CmdID>1</CmdID><Item><Target><LocURI>/x</LocURI></Target></Item></Get>",
            "<Atomic><CmdID>1</CmdID><Get><CmdID>2</CmdID><Item><Target><LocURI>./x</LocURI></Target></Item></Get></Atomic>",
            "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>1</CmdRef><Cmd>Get</Cmd><Data>200</Data></Status>",
            "<Get><CmdID>1</CmdID><Item><Target><LocURI>./a</LocURI></Target></Item></Get><Get><CmdID>2</CmdID><Item><Target><LocURI>./b</LocURI></Target></Item></Get>",
            "not xml",
        ] {
            assert!(prepare("D", NewCommand { syncml: Some(bad.into()), ..NewCommand::default() }, 1).is_err(), "{bad} accepted");
        }
        assert!(prepare(
            "D",
            NewCommand {
                verb: Some("Copy".into()),
                target: Some("./a".into()),
                ..NewCommand::default()
            },
            1
        )
        .is_err());
        assert!(prepare(
            "D",
            NewCommand {
                verb: Some("Get".into()),
                target: Some("./a".into()),
                command_id: Some("bad id".into()),
                ..NewCommand::default()
            },
            1
        )
        .is_err());
    }
}

/// What happened to one device of a bulk enqueue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum BulkOutcome {
    /// Queued (or already queued under that id).
    Queued {
        /// The command id.
        command_id: String,
        /// `true` when the id already existed and nothing was queued.
        existing: bool,
    },
    /// Not queued.
    Refused {
        /// Why.
        error: String,
    },
}

/// Devices per store transaction in [`enqueue_many`].
pub const BULK_CHUNK: usize = 1000;

/// Validates `req` once and queues it for every device in `device_ids` (unknown or unenrolled
/// devices are reported, not fatal), in transactions of [`BULK_CHUNK`] devices.
pub fn enqueue_many(
    app: &App,
    device_ids: &[String],
    req: NewCommand,
) -> Result<Vec<(String, BulkOutcome)>, CommandError> {
    let now = app.clock.now_unix();
    let template = prepare("", req.clone(), now)?;
    let mut out = Vec::with_capacity(device_ids.len());
    for chunk in device_ids.chunks(BULK_CHUNK) {
        let records: Vec<CommandRecord> = chunk
            .iter()
            .map(|id| {
                let mut rec = template.clone();
                rec.device_id = id.clone();
                if req.command_id.is_none() {
                    rec.command_id = crate::clock::time_ordered_id(now);
                }
                rec
            })
            .collect();
        // The device checks (exists, enrolled, device scope for bulk devices) happen in the
        // enqueue's transaction: one read of each device record, no separate lookup.
        for (id, e) in chunk.iter().zip(app.store.enqueue_gated_many(records)?) {
            let o = match e {
                Ok(Enqueued::Created(c)) => BulkOutcome::Queued {
                    command_id: c.command_id,
                    existing: false,
                },
                Ok(Enqueued::Existing(c)) => BulkOutcome::Queued {
                    command_id: c.command_id,
                    existing: true,
                },
                Err(r) => BulkOutcome::Refused {
                    error: match r {
                        Refusal::NotFound => "device not found",
                        Refusal::NotEnrolled => "device is not enrolled",
                        Refusal::DeviceScopeOnly => {
                            "bulk-enrolled device: device-scope commands only"
                        }
                    }
                    .into(),
                },
            };
            out.push((id.clone(), o));
        }
    }
    tracing::info!(devices = device_ids.len(), verb = %template.verb, target = ?template.target, "bulk command queued");
    Ok(out)
}
