//! Linking enrolled devices to registered Autopilot devices.
//!
//! 1. At enrollment ([`on_enrolled`]), when any Autopilot device is registered, a
//!    `Get ./DevDetail/Ext/Microsoft/SMBIOSSerialNumber` is queued, so it goes out in the
//!    device's first management session.
//! 2. The device's `Results` land in its inventory; at the end of that round ([`on_round`]) a
//!    serial that matches a registered device links the two: the enrolled device gets
//!    `autopilot_serial` (it enrolled through Autopilot) and the record's `group_tag`, the
//!    Autopilot record gets `linked_device_id`, and [`super::on_device_attributes_changed`]
//!    queues TenantLockdown when it applies — before the reply is written, so it reaches the
//!    device in that same session.

use crate::app::App;
use crate::mdm::commands::{self, CommandError, NewCommand};
use crate::store::{AuditEntry, Device, DeviceState};

use super::csv::serial_key;
use super::devices::DEVICES;

/// The DevDetail node holding the BIOS serial number.
pub const SERIAL_URI: &str = "./DevDetail/Ext/Microsoft/SMBIOSSerialNumber";
/// Command id prefix of the serial-number Get (one per enrollment: the certificate serial
/// follows, so a device that enrolls again is asked again).
pub const SERIAL_COMMAND_ID: &str = "autopilot-serial";

/// After an enrollment: asks the device for its serial number if any Autopilot device is
/// registered. Failures are logged; they never fail the enrollment.
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
    if converting {
        // Serial number and hardware hash, in case its profile converts it.
        if let Err(e) = super::convert::request(app, device) {
            tracing::error!(device_id = %device.device_id, error = %e, "Autopilot: cannot queue the serial and hash Gets");
        }
        return;
    }
    if !registered {
        return;
    }
    let get = NewCommand {
        verb: Some("Get".into()),
        target: Some(SERIAL_URI.into()),
        command_id: Some(format!("{SERIAL_COMMAND_ID}-{}", device.cert_serial)),
        ..NewCommand::default()
    };
    match commands::enqueue(app, &device.device_id, get) {
        Ok(_) => {
            tracing::info!(device_id = %device.device_id, "Autopilot: serial number requested for the first session")
        }
        Err(e) => {
            tracing::error!(device_id = %device.device_id, error = %e, "Autopilot: cannot queue the serial number Get")
        }
    }
}

/// At the end of a management round, before the reply: links `device` (the round's copy, which
/// the caller stores) when this round reported a serial number (`serial_before` is the
/// inventory value before the round) that matches a registered Autopilot device.
pub fn on_round(
    app: &App,
    device: &mut Device,
    serial_before: Option<&str>,
) -> Result<(), CommandError> {
    if device.autopilot_serial.is_some() || device.state != DeviceState::Enrolled {
        return Ok(());
    }
    let Some(serial) = device.inventory.get(SERIAL_URI).cloned() else {
        return Ok(());
    };
    if serial_before == Some(serial.as_str()) || serial.trim().is_empty() {
        return Ok(());
    }
    let key = serial_key(&serial);
    let s = app.store.records();
    let Some(rec) = DEVICES.get(s, &key)? else {
        tracing::debug!(device_id = %device.device_id, %serial, "serial number matches no Autopilot device");
        return Ok(());
    };
    if let Some(other) = rec
        .linked_device_id
        .as_deref()
        .filter(|o| *o != device.device_id)
    {
        // The same serial claimed by another live device that is not the same hardware
        // re-enrolling: keep the first link.
        if let Some(o) = app.store.get_device(other)? {
            let same_hw = o.hw_dev_id.is_some() && o.hw_dev_id == device.hw_dev_id;
            if o.state == DeviceState::Enrolled && !same_hw {
                tracing::warn!(device_id = %device.device_id, %serial, linked = other, "serial number already linked to another enrolled device; not linked");
                return Ok(());
            }
        }
    }
    let now = app.clock.now_unix();
    let id = device.device_id.clone();
    let linked = DEVICES.update(s, &key, |cur| {
        Ok(cur.map(|mut r| {
            r.linked_device_id = Some(id.clone());
            r.linked_at = Some(now);
            r
        }))
    })?;
    let Some(rec) = linked else {
        return Ok(());
    };
    device.autopilot_serial = Some(rec.serial.clone());
    device.group_tag = rec.group_tag.clone();
    tracing::info!(device_id = %device.device_id, serial = %rec.serial, group_tag = ?rec.group_tag, "enrolled device linked to its Autopilot registration");
    let entry = AuditEntry {
        id: 0,
        at: now,
        actor: "system".into(),
        action: "autopilot.link".into(),
        target: rec.serial.clone(),
        detail: serde_json::json!({ "device_id": device.device_id, "group_tag": rec.group_tag }),
    };
    if let Err(e) = app.store.append_audit(entry) {
        tracing::error!(error = %e, "audit entry autopilot.link not written");
    }
    super::on_device_attributes_changed(app, device)
}
