//! "Convert all targeted devices to Autopilot": an enrolled device that is not registered as an
//! Autopilot device, and whose Autopilot profile (through its groups, or the all-groups profile)
//! has `convert_all_targeted`, is registered from what it reports about itself and then linked
//! like an imported one.
//!
//! 1. [`request`] queues `Get ./DevDetail/Ext/Microsoft/SMBIOSSerialNumber` and
//!    `Get ./DevDetail/Ext/DeviceHardwareData` (the hardware hash, DevDetail CSP): at
//!    enrollment while any profile converts, and for every enrolled, unregistered device when
//!    an admin saves a converting profile ([`request_all`]).
//! 2. After a round that reported either value ([`after_round`]), once both are in: both come
//!    from the stored `Results` of these Gets ([`super::link::report`]), never from values the
//!    device sent unasked. The device's profile is resolved with its current groups;
//!    if it converts, an Autopilot record is created (audit `autopilot.convert`) and the device
//!    is linked to it ([`super::link::on_round`]: serial, group tag, TenantLockdown).

use crate::app::App;
use crate::mdm::commands::{self, CommandError, NewCommand};
use crate::store::{AuditEntry, Device, DeviceState, StoreError};

use super::csv::{check_hash, serial_key};
use super::devices::{AutopilotDevice, DEVICES};
use super::link::{SERIAL_COMMAND_ID, SERIAL_URI};

/// The DevDetail node holding the Autopilot hardware hash (base64).
pub const HWDATA_URI: &str = "./DevDetail/Ext/DeviceHardwareData";
/// Command id prefix of the hardware-hash Get (the certificate serial follows, as for the
/// serial-number Get).
pub const HWDATA_COMMAND_ID: &str = "autopilot-hwdata";

/// Whether any Autopilot profile converts its targeted devices.
pub fn any_converting(app: &App) -> Result<bool, StoreError> {
    Ok(super::profiles::all(app.store.records())?
        .iter()
        .any(|p| p.convert_all_targeted))
}

fn hwdata_command_id(d: &Device) -> String {
    format!("{HWDATA_COMMAND_ID}-{}", d.cert_serial)
}

/// Queues the serial-number and hardware-hash Gets for `d` (idempotent: the command ids are
/// per enrollment).
pub fn request(app: &App, d: &Device) -> Result<(), CommandError> {
    for (uri, id) in [
        (SERIAL_URI, format!("{SERIAL_COMMAND_ID}-{}", d.cert_serial)),
        (HWDATA_URI, hwdata_command_id(d)),
    ] {
        let get = NewCommand {
            verb: Some("Get".into()),
            target: Some(uri.into()),
            command_id: Some(id),
            ..NewCommand::default()
        };
        commands::enqueue(app, &d.device_id, get)?;
    }
    Ok(())
}

/// Asks every enrolled device that is not yet an Autopilot device for its serial number and
/// hardware hash (an admin saved a converting profile). Returns how many were asked.
pub fn request_all(app: &App) -> Result<usize, CommandError> {
    let (mut after, mut asked) = (None::<String>, 0);
    loop {
        let page = app.store.list_devices(after.as_deref(), 500)?;
        let Some(last) = page.last() else {
            return Ok(asked);
        };
        after = Some(last.device_id.clone());
        for d in page
            .iter()
            .filter(|d| d.state == DeviceState::Enrolled && d.autopilot_serial.is_none())
        {
            request(app, d)?;
            asked += 1;
        }
    }
}

/// After an import: links every enrolled, unlinked device whose answers to this enrollment's
/// serial Get name a serial that is now registered, and asks the others (that were never asked
/// in this enrollment) for their serial and hardware hash, so a device enrolled before its
/// hardware hash was imported is linked at its next session. Returns (linked now, asked).
pub fn link_after_import(app: &App) -> Result<(usize, usize), CommandError> {
    let (mut after, mut linked, mut asked) = (None::<String>, 0, 0);
    loop {
        let page = app.store.list_devices(after.as_deref(), 500)?;
        let Some(last) = page.last() else {
            return Ok((linked, asked));
        };
        after = Some(last.device_id.clone());
        for mut d in page
            .into_iter()
            .filter(|d| d.state == DeviceState::Enrolled && d.autopilot_serial.is_none())
        {
            if let Some(r) = super::link::report(app, &d, &[])? {
                super::link::link(app, &mut d, &r)?;
                if d.autopilot_serial.is_some() {
                    app.store.put_device(&d)?;
                    if let Err(e) = crate::groups::on_device_changed(app, &d.device_id) {
                        tracing::error!(device_id = %d.device_id, error = %e, "groups not re-evaluated after the link");
                    }
                    linked += 1;
                }
                continue;
            }
            request(app, &d)?;
            asked += 1;
        }
    }
}

/// Whether a round changed what conversion depends on (call [`after_round`] then).
pub fn reported(before: &Device, after: &Device) -> bool {
    after.autopilot_serial.is_none()
        && (before.inventory.get(SERIAL_URI) != after.inventory.get(SERIAL_URI)
            || before.inventory.get(HWDATA_URI) != after.inventory.get(HWDATA_URI))
}

/// After a committed round: registers and links `device_id` if its profile converts it and both
/// values have arrived. Returns whether it was converted.
pub fn after_round(app: &App, device_id: &str) -> Result<bool, CommandError> {
    let Some(mut d) = app.store.get_device(device_id)? else {
        return Ok(false);
    };
    if d.autopilot_serial.is_some() || d.state != DeviceState::Enrolled {
        return Ok(false);
    }
    // Only the answers to our own Gets count, never values the device sent unasked.
    let Some(report) = super::link::report(app, &d, &[])? else {
        return Ok(false);
    };
    let super::link::HashReport::Data(hash) = report.hash.clone() else {
        return Ok(false);
    };
    let serial = report.serial.clone();
    if let Err(why) = check_hash(&hash) {
        tracing::warn!(device_id, %serial, %why, "Autopilot conversion: unusable hardware hash");
        return Ok(false);
    }
    let Some(profile) = super::applicable_profile(app, &d)?.filter(|p| p.convert_all_targeted)
    else {
        return Ok(false);
    };
    let now = app.clock.now_unix();
    let record = AutopilotDevice {
        serial: serial.clone(),
        product_id: None,
        hardware_hash: hash,
        group_tag: None,
        assigned_user: None,
        user_friendly_name: None,
        device_name: None,
        linked_device_id: None,
        linked_at: None,
        imported_at: now,
        hash_check: None,
        conflicts: Vec::new(),
    };
    // An admin may have imported it meanwhile: then it is simply linked.
    let created = DEVICES.insert_new(app.store.records(), &serial_key(&serial), &record)?;
    super::link::link(app, &mut d, &report)?;
    if d.autopilot_serial.is_none() {
        return Ok(false);
    }
    app.store.put_device(&d)?;
    if created {
        let entry = AuditEntry {
            id: 0,
            at: now,
            actor: "system".into(),
            action: "autopilot.convert".into(),
            target: serial.clone(),
            detail: serde_json::json!({ "device_id": device_id, "profile": profile.name }),
        };
        if let Err(e) = app.store.append_audit(entry) {
            tracing::error!(error = %e, "audit entry autopilot.convert not written");
        }
    }
    tracing::info!(device_id, %serial, profile = %profile.name, created, "device converted to Autopilot");
    if let Err(e) = crate::groups::on_device_changed(app, device_id) {
        tracing::error!(device_id, error = %e, "groups not re-evaluated after the conversion");
    }
    Ok(true)
}
