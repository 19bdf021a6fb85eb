//! Linking enrolled devices to registered Autopilot devices.
//!
//! 1. At enrollment ([`on_enrolled`]), when any Autopilot device is registered (or a profile
//!    converts), `Get ./DevDetail/Ext/Microsoft/SMBIOSSerialNumber` and
//!    `Get ./DevDetail/Ext/DeviceHardwareData` are queued, so they go out in the device's first
//!    management session.
//! 2. Only the device's `Results` to *these* Gets count ([`report`]): a serial the device sends
//!    unasked (a `Replace` of the node) lands in its inventory and links nothing. At the end of
//!    the round that completed them ([`on_round`]), a serial that matches a registered device is
//!    checked ([`link`]): the registration must not already be linked to another enrolled
//!    device, and the device's hardware hash must agree with the imported one
//!    ([`super::hwhash::check`]). Then the enrolled device gets `autopilot_serial` and the
//!    record's `group_tag`, the Autopilot record gets `linked_device_id`, and
//!    [`super::on_device_attributes_changed`] queues TenantLockdown when it applies — before the
//!    reply is written, so it reaches the device in that same session. Otherwise the claim is
//!    recorded on the registration as a conflict (`conflicts`, audit `autopilot.link_conflict`)
//!    for an admin to resolve ([`relink`]); the device is not linked.

use crate::app::App;
use crate::mdm::commands::CommandError;
use crate::store::{AuditEntry, CommandRecord, Device, DeviceState, StoreError};

use super::convert::{HWDATA_COMMAND_ID, HWDATA_URI};
use super::csv::serial_key;
use super::devices::{AutopilotDevice, LinkConflict, DEVICES, MAX_CONFLICTS};
use super::hwhash::{self, HashCheck};

/// The DevDetail node holding the BIOS serial number.
pub const SERIAL_URI: &str = "./DevDetail/Ext/Microsoft/SMBIOSSerialNumber";
/// Command id prefix of the serial-number Get (one per enrollment: the certificate serial
/// follows, so a device that enrolls again is asked again).
pub const SERIAL_COMMAND_ID: &str = "autopilot-serial";

/// After an enrollment: asks the device for its serial number and hardware hash if any Autopilot
/// device is registered or any profile converts. Failures are logged; they never fail the
/// enrollment.
pub fn on_enrolled(app: &App, device: &Device) {
    let registered = match DEVICES.list(app.store.records(), None, 1) {
        Ok(v) => !v.is_empty(),
        Err(e) => {
            tracing::error!(device_id = %device.device_id, error = %e, "Autopilot: cannot read registered devices");
            return;
        }
    };
    let converting = super::convert::any_converting(app).unwrap_or_else(|e| {
        tracing::error!(device_id = %device.device_id, error = %e, "Autopilot: cannot read profiles");
        false
    });
    if !registered && !converting {
        return;
    }
    match super::convert::request(app, device) {
        Ok(()) => {
            tracing::info!(device_id = %device.device_id, "Autopilot: serial number and hardware hash requested for the first session")
        }
        Err(e) => {
            tracing::error!(device_id = %device.device_id, error = %e, "Autopilot: cannot queue the serial and hash Gets")
        }
    }
}

/// What the device answered to the hardware-hash Get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashReport {
    /// Not answered yet: wait before linking.
    Pending,
    /// Never asked, refused, cancelled, or answered without data.
    Missing,
    /// The base64 value.
    Data(String),
}

/// The device's answers to the server's own Autopilot Gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The serial number from the Results of the serial Get.
    pub serial: String,
    /// The hardware hash.
    pub hash: HashReport,
}

fn is_ours(c: &CommandRecord, prefix: &str, uri: &str) -> bool {
    c.command_id.starts_with(prefix)
        && c.verb == "Get"
        && c.target.as_deref().map(str::trim) == Some(uri)
}

fn answered(c: &CommandRecord) -> Option<String> {
    c.results
        .iter()
        .rev()
        .find_map(|r| r.data.as_deref())
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
}

/// The answers of `device` to this enrollment's Autopilot Gets: the copies in `touched` (this
/// round's, not yet stored) win over the stored ones. `None` until the serial is answered.
pub fn report(
    app: &App,
    device: &Device,
    touched: &[&CommandRecord],
) -> Result<Option<Report>, StoreError> {
    let find = |prefix: &str, uri: &str| -> Result<Option<CommandRecord>, StoreError> {
        if let Some(c) = touched.iter().find(|c| is_ours(c, prefix, uri)) {
            return Ok(Some((*c).clone()));
        }
        let id = format!("{prefix}-{}", device.cert_serial);
        Ok(app
            .store
            .get_command(&device.device_id, &id)?
            .filter(|c| is_ours(c, prefix, uri)))
    };
    let Some(serial) = find(SERIAL_COMMAND_ID, SERIAL_URI)?.and_then(|c| answered(&c)) else {
        return Ok(None);
    };
    let hash = match find(HWDATA_COMMAND_ID, HWDATA_URI)? {
        None => HashReport::Missing,
        Some(c) => match answered(&c) {
            Some(h) => HashReport::Data(h),
            None if c.state.is_terminal() => HashReport::Missing,
            None => HashReport::Pending,
        },
    };
    Ok(Some(Report { serial, hash }))
}

/// Whether `touched` (a round's changed commands) holds one of the Autopilot Gets.
pub fn touched(touched: &[&CommandRecord]) -> bool {
    touched.iter().any(|c| {
        is_ours(c, SERIAL_COMMAND_ID, SERIAL_URI) || is_ours(c, HWDATA_COMMAND_ID, HWDATA_URI)
    })
}

/// At the end of a management round, before the reply: when the round touched one of the
/// Autopilot Gets (`touched`: the commands it changed), tries to link `device` (the round's copy,
/// which the caller stores).
pub fn on_round(
    app: &App,
    device: &mut Device,
    touched: &[&CommandRecord],
) -> Result<(), CommandError> {
    if device.autopilot_serial.is_some() || device.state != DeviceState::Enrolled {
        return Ok(());
    }
    if !self::touched(touched) {
        return Ok(());
    }
    match report(app, device, touched)? {
        Some(r) => link(app, device, &r),
        None => Ok(()),
    }
}

/// Links `device` to the registration of `r.serial` if the checks pass, else records the
/// conflict (see the module documentation). Returns without change while the hash is pending.
pub fn link(app: &App, device: &mut Device, r: &Report) -> Result<(), CommandError> {
    if device.autopilot_serial.is_some() || device.state != DeviceState::Enrolled {
        return Ok(());
    }
    let key = serial_key(&r.serial);
    let s = app.store.records();
    let Some(rec) = DEVICES.get(s, &key)? else {
        tracing::debug!(device_id = %device.device_id, serial = %r.serial, "serial number matches no Autopilot device");
        return Ok(());
    };
    if r.hash == HashReport::Pending {
        return Ok(());
    }
    if let Some(other) = rec
        .linked_device_id
        .as_deref()
        .filter(|o| *o != device.device_id)
    {
        if app
            .store
            .get_device(other)?
            .is_some_and(|o| o.state == DeviceState::Enrolled)
        {
            let reason = format!("the serial number is already linked to enrolled device {other}");
            return conflict(app, &key, device, reason);
        }
    }
    let reported = match &r.hash {
        HashReport::Data(h) => Some(h.as_str()),
        _ => None,
    };
    let check = hwhash::check(&rec.hardware_hash, &r.serial, reported);
    if let HashCheck::Mismatch { reason } = check {
        return conflict(app, &key, device, reason);
    }
    let now = app.clock.now_unix();
    let id = device.device_id.clone();
    let verdict = check.name().to_string();
    let linked = DEVICES.update(s, &key, |cur| {
        Ok(cur.map(|mut r| {
            r.linked_device_id = Some(id.clone());
            r.linked_at = Some(now);
            r.hash_check = Some(verdict.clone());
            r
        }))
    })?;
    let Some(rec) = linked else {
        return Ok(());
    };
    apply_link(app, device, &rec, "system", check.name())
}

/// Marks `device` as linked to `rec` (serial, group tag, TenantLockdown) and audits it.
fn apply_link(
    app: &App,
    device: &mut Device,
    rec: &AutopilotDevice,
    actor: &str,
    hash_check: &str,
) -> Result<(), CommandError> {
    device.autopilot_serial = Some(rec.serial.clone());
    device.group_tag = rec.group_tag.clone();
    tracing::info!(device_id = %device.device_id, serial = %rec.serial, group_tag = ?rec.group_tag, hash_check, "enrolled device linked to its Autopilot registration");
    audit(
        app,
        actor,
        "autopilot.link",
        &rec.serial,
        serde_json::json!({ "device_id": device.device_id, "group_tag": rec.group_tag, "hash_check": hash_check }),
    );
    super::on_device_attributes_changed(app, device)
}

fn audit(app: &App, actor: &str, action: &str, target: &str, detail: serde_json::Value) {
    let entry = AuditEntry {
        id: 0,
        at: app.clock.now_unix(),
        actor: actor.into(),
        action: action.into(),
        target: target.into(),
        detail,
    };
    if let Err(e) = app.store.append_audit(entry) {
        tracing::error!(error = %e, action, "audit entry not written");
    }
}

/// Records a refused claim on the registration `key` (once per device and reason).
fn conflict(app: &App, key: &str, device: &Device, reason: String) -> Result<(), CommandError> {
    let now = app.clock.now_unix();
    let mut new = false;
    let rec = DEVICES.update(app.store.records(), key, |cur| {
        new = false;
        Ok(cur.map(|mut r| {
            if !r
                .conflicts
                .iter()
                .any(|c| c.device_id == device.device_id && c.reason == reason)
            {
                new = true;
                r.conflicts.push(LinkConflict {
                    device_id: device.device_id.clone(),
                    reason: reason.clone(),
                    at: now,
                });
                if r.conflicts.len() > MAX_CONFLICTS {
                    let extra = r.conflicts.len() - MAX_CONFLICTS;
                    r.conflicts.drain(..extra);
                }
            }
            r
        }))
    })?;
    let Some(rec) = rec else { return Ok(()) };
    tracing::warn!(device_id = %device.device_id, serial = %rec.serial, %reason, "Autopilot link refused: conflict recorded for the admin");
    if new {
        audit(
            app,
            "system",
            "autopilot.link_conflict",
            &rec.serial,
            serde_json::json!({
                "device_id": device.device_id,
                "upn": device.upn,
                "reason": reason,
                "linked_device_id": rec.linked_device_id,
            }),
        );
    }
    Ok(())
}

/// An admin's resolution: links the registration `serial` to the enrolled device `device_id`
/// (`None`: unlinks it), whatever the checks said, and clears its conflicts. The device that
/// held the link loses its Autopilot serial and group tag. Returns the updated registration, or
/// `None` when it does not exist. Errors: `Err(Ok(reason))` for an unknown or unenrolled device.
pub fn relink(
    app: &App,
    serial: &str,
    device_id: Option<&str>,
    actor: &str,
) -> Result<Result<Option<AutopilotDevice>, String>, CommandError> {
    let key = serial_key(serial);
    let s = app.store.records();
    let Some(rec) = DEVICES.get(s, &key)? else {
        return Ok(Ok(None));
    };
    let mut target = match device_id {
        None => None,
        Some(id) => match app.store.get_device(id)? {
            Some(d) if d.state == DeviceState::Enrolled => Some(d),
            Some(_) => return Ok(Err(format!("device {id} is not enrolled"))),
            None => return Ok(Err(format!("device {id} does not exist"))),
        },
    };
    if let Some(old) = rec
        .linked_device_id
        .as_deref()
        .filter(|o| Some(*o) != device_id)
    {
        if let Some(mut d) = app.store.get_device(old)? {
            if d.autopilot_serial.as_deref().map(serial_key) == Some(key.clone()) {
                d.autopilot_serial = None;
                d.group_tag = None;
                app.store.put_device(&d)?;
                let _ = crate::groups::on_device_changed(app, old);
            }
        }
    }
    let now = app.clock.now_unix();
    let new_link = device_id.map(str::to_string);
    let rec = DEVICES.update(s, &key, |cur| {
        Ok(cur.map(|mut r| {
            r.linked_at = new_link.as_ref().map(|_| now);
            r.linked_device_id = new_link.clone();
            r.hash_check = new_link.as_ref().map(|_| "admin".to_string());
            r.conflicts.clear();
            r
        }))
    })?;
    let Some(rec) = rec else { return Ok(Ok(None)) };
    if let Some(d) = target.as_mut() {
        apply_link(app, d, &rec, actor, "admin")?;
        app.store.put_device(d)?;
        let _ = crate::groups::on_device_changed(app, &d.device_id);
    }
    Ok(Ok(Some(rec)))
}
