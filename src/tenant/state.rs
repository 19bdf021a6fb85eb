//! The tenant's records: the connection (one), the connection's last error, each Autopilot
//! device's and profile's state in the tenant (ids Graph gave, what is pending), and the Entra
//! groups winmdm created. Changes an admin makes are marked pending here, in the store, by the
//! hooks below (no network): the sync pass pushes them, and a change that could not be pushed
//! (a revoked credential, Graph down) stays pending and is retried.

use serde::{Deserialize, Serialize};

use super::credential::Summary;
use crate::autopilot::csv::serial_key;
use crate::store::records::{Kind, RecordStore};
use crate::store::StoreError;

/// The connection record (key [`KEY`]).
pub const CONNECTION: Kind<Connection> = Kind::new("tenant_connection");
/// The connection-level error (key [`KEY`]).
pub const LAST_ERROR: Kind<ErrorNote> = Kind::new("tenant_error");
/// Devices' tenant state, by serial key.
pub const DEVICES: Kind<TenantDevice> = Kind::new("tenant_device");
/// Profiles' tenant state, by profile id.
pub const PROFILES: Kind<TenantProfile> = Kind::new("tenant_profile");
/// Entra groups winmdm created, by Graph object id.
pub const GROUPS: Kind<EntraGroup> = Kind::new("tenant_group");
/// The key of the single records.
pub const KEY: &str = "tenant";
/// Failed pushes of one change before it is given up (its error stays shown).
pub const MAX_ATTEMPTS: u32 = 5;
/// Profile assignments kept per profile.
pub const MAX_ASSIGNMENTS: usize = 100;

/// A connected tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// Entra tenant id (lower-case GUID).
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// The credential's kind and thumbprints (never the secret).
    pub credential: Summary,
    /// The organization's display name, as Graph gave it.
    pub organization: Option<String>,
    /// When it was connected (Unix seconds).
    pub connected_at: i64,
    /// The admin token that connected it.
    pub connected_by: String,
    /// Last successful sync pass.
    pub last_sync: Option<i64>,
    /// Last successful pull of the tenant's devices.
    pub last_pull: Option<i64>,
}

/// The last connection-level failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorNote {
    /// When (Unix seconds).
    pub at: i64,
    /// What failed.
    pub message: String,
}

/// What is waiting to be pushed for a device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// POST it to `importedWindowsAutopilotDeviceIdentities`.
    pub import: bool,
    /// Send its properties with `updateDeviceProperties`.
    pub update: bool,
    /// Delete it in the tenant (winmdm imported it).
    pub delete: bool,
}

impl Pending {
    /// Anything at all.
    pub fn any(&self) -> bool {
        self.import || self.update || self.delete
    }
}

/// An Autopilot device's state in the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDevice {
    /// Serial number.
    pub serial: String,
    /// winmdm imported it into the tenant (only those are deleted there).
    pub created_by_winmdm: bool,
    /// The `importedWindowsAutopilotDeviceIdentity` id.
    pub import_id: Option<String>,
    /// `state.deviceImportStatus`: unknown, pending, partial, complete, error.
    pub import_status: Option<String>,
    /// `state.deviceErrorCode`.
    pub error_code: Option<i64>,
    /// `state.deviceErrorName`.
    pub error_name: Option<String>,
    /// The `windowsAutopilotDeviceIdentity` id once registered.
    pub autopilot_id: Option<String>,
    /// What waits to be pushed.
    pub pending: Pending,
    /// Bumped by every local change (a push clears `pending` only if it did not move).
    pub rev: u64,
    /// Failed pushes in a row.
    pub attempts: u32,
    /// The last push's error.
    pub last_error: Option<String>,
    /// Last change (Unix seconds).
    pub updated_at: i64,
}

impl TenantDevice {
    fn new(serial: &str, created_by_winmdm: bool, now: i64) -> TenantDevice {
        TenantDevice {
            serial: serial.to_string(),
            created_by_winmdm,
            import_id: None,
            import_status: None,
            error_code: None,
            error_name: None,
            autopilot_id: None,
            pending: Pending::default(),
            rev: 0,
            attempts: 0,
            last_error: None,
            updated_at: now,
        }
    }

    /// Registered in the tenant (an Autopilot identity id is known).
    pub fn registered(&self) -> bool {
        self.autopilot_id.is_some()
    }

    /// The import is still being processed by Microsoft.
    pub fn import_in_progress(&self) -> bool {
        self.import_id.is_some()
            && self.autopilot_id.is_none()
            && matches!(
                self.import_status.as_deref(),
                None | Some("unknown" | "pending" | "partial" | "complete")
            )
    }

    /// The state as the API shows it next to the device.
    pub fn view(&self) -> serde_json::Value {
        let state = if self.pending.delete {
            "deleting"
        } else if self.autopilot_id.is_some() {
            "registered"
        } else if self.import_status.as_deref() == Some("error") {
            "error"
        } else if self.import_id.is_some() || self.pending.import {
            "importing"
        } else {
            "unknown"
        };
        serde_json::json!({
            "state": state,
            "created_by_winmdm": self.created_by_winmdm,
            "autopilot_id": self.autopilot_id,
            "import_id": self.import_id,
            "import_status": self.import_status,
            "device_error_code": self.error_code,
            "device_error_name": self.error_name,
            "pending": self.pending,
            "last_error": self.last_error,
            "updated_at": self.updated_at,
        })
    }
}

/// A profile assignment made in the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Entra group object id.
    pub group_id: String,
    /// The assignment's id in Graph.
    pub assignment_id: Option<String>,
}

/// An Autopilot profile's state in the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantProfile {
    /// Our profile id.
    pub profile_id: String,
    /// Its name (for lists, and for a profile already deleted locally).
    pub name: String,
    /// The `windowsAutopilotDeploymentProfile` id winmdm created.
    pub graph_id: Option<String>,
    /// Create or update it in the tenant.
    pub push: bool,
    /// Delete it in the tenant (it was deleted here).
    pub delete: bool,
    /// Bumped by every local change.
    pub rev: u64,
    /// Assignments made.
    pub assignments: Vec<Assignment>,
    /// Failed pushes in a row.
    pub attempts: u32,
    /// The last push's error.
    pub last_error: Option<String>,
    /// Last change (Unix seconds).
    pub updated_at: i64,
}

/// An Entra group winmdm created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntraGroup {
    /// Graph object id.
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// `mailNickname`.
    pub mail_nickname: String,
    /// `dynamic` or `static`.
    pub kind: String,
    /// The membership rule of a dynamic group.
    pub membership_rule: Option<String>,
    /// Serial numbers of a static group's devices.
    pub devices: Vec<String>,
    /// Created (Unix seconds).
    pub created_at: i64,
    /// The admin token that created it.
    pub created_by: String,
}

/// The connection, if any.
pub fn connection(s: &dyn RecordStore) -> Result<Option<Connection>, StoreError> {
    CONNECTION.get(s, KEY)
}

/// Notes a connection-level failure.
pub fn note_error(s: &dyn RecordStore, now: i64, message: &str) -> Result<(), StoreError> {
    LAST_ERROR.put(
        s,
        KEY,
        &ErrorNote {
            at: now,
            message: message.to_string(),
        },
    )
}

/// Clears the connection-level failure.
pub fn clear_error(s: &dyn RecordStore) -> Result<(), StoreError> {
    LAST_ERROR.delete(s, KEY).map(|_| ())
}

/// Devices just imported locally: to be imported into the tenant (when one is connected).
/// Returns how many were marked.
pub fn on_devices_imported(
    s: &dyn RecordStore,
    serials: &[String],
    now: i64,
) -> Result<usize, StoreError> {
    if connection(s)?.is_none() {
        return Ok(0);
    }
    for serial in serials {
        DEVICES.update(s, &serial_key(serial), |cur| {
            let mut d = match cur {
                // A device deleted here and imported again: the deletion goes first.
                Some(d) if d.pending.delete => d,
                _ => TenantDevice::new(serial, true, now),
            };
            d.created_by_winmdm = true;
            d.pending.import = true;
            d.rev += 1;
            d.attempts = 0;
            d.updated_at = now;
            Ok(Some(d))
        })?;
    }
    Ok(serials.len())
}

/// A device edited locally: its properties go to the tenant if it is there (or on its way).
pub fn on_device_patched(s: &dyn RecordStore, serial: &str, now: i64) -> Result<bool, StoreError> {
    if connection(s)?.is_none() {
        return Ok(false);
    }
    let mut marked = false;
    DEVICES.update(s, &serial_key(serial), |cur| {
        marked = false;
        let Some(mut d) = cur else { return Ok(None) };
        if d.pending.delete {
            return Ok(Some(d));
        }
        if d.pending.import && d.import_id.is_none() {
            // Not sent yet: the import carries the new values.
            return Ok(Some(d));
        }
        d.pending.update = true;
        d.rev += 1;
        d.attempts = 0;
        d.updated_at = now;
        marked = true;
        Ok(Some(d))
    })?;
    Ok(marked)
}

/// Whether a local deletion of `serial` is allowed: a device registered in the tenant by
/// someone else is not winmdm's to delete (the admin deletes it in Intune; the pull then
/// removes nothing and adds nothing back). `Err(reason)` when refused.
pub fn may_delete(s: &dyn RecordStore, serial: &str) -> Result<Result<(), String>, StoreError> {
    if connection(s)?.is_none() {
        return Ok(Ok(()));
    }
    Ok(match DEVICES.get(s, &serial_key(serial))? {
        Some(d) if !d.created_by_winmdm && d.registered() => Err(format!(
            "Autopilot device {serial} was registered in the Microsoft tenant by someone else \
             (Autopilot id {}); winmdm deletes only what it imported: delete it in Intune, \
             the next sync then removes it here",
            d.autopilot_id.as_deref().unwrap_or("")
        )),
        _ => Ok(()),
    })
}

/// A device deleted locally: deleted in the tenant too if winmdm imported it there.
pub fn on_device_deleted(s: &dyn RecordStore, serial: &str, now: i64) -> Result<(), StoreError> {
    DEVICES.update(s, &serial_key(serial), |cur| {
        let Some(mut d) = cur else { return Ok(None) };
        if !d.created_by_winmdm || (d.import_id.is_none() && d.autopilot_id.is_none()) {
            // Never reached the tenant, or not ours: forget it.
            return Ok(None);
        }
        d.pending = Pending {
            import: false,
            update: false,
            delete: true,
        };
        d.rev += 1;
        d.attempts = 0;
        d.updated_at = now;
        Ok(Some(d))
    })?;
    Ok(())
}

/// A profile created or changed locally: pushed to the tenant.
pub fn on_profile_changed(
    s: &dyn RecordStore,
    id: &str,
    name: &str,
    now: i64,
) -> Result<bool, StoreError> {
    if connection(s)?.is_none() {
        return Ok(false);
    }
    PROFILES.update(s, id, |cur| {
        let mut p = cur.unwrap_or(TenantProfile {
            profile_id: id.to_string(),
            name: name.to_string(),
            graph_id: None,
            push: false,
            delete: false,
            rev: 0,
            assignments: Vec::new(),
            attempts: 0,
            last_error: None,
            updated_at: now,
        });
        p.name = name.to_string();
        p.push = true;
        p.delete = false;
        p.rev += 1;
        p.attempts = 0;
        p.updated_at = now;
        Ok(Some(p))
    })?;
    Ok(true)
}

/// A profile deleted locally: deleted in the tenant if winmdm created it there.
pub fn on_profile_deleted(s: &dyn RecordStore, id: &str, now: i64) -> Result<(), StoreError> {
    PROFILES.update(s, id, |cur| {
        let Some(mut p) = cur else { return Ok(None) };
        if p.graph_id.is_none() {
            return Ok(None);
        }
        p.push = false;
        p.delete = true;
        p.rev += 1;
        p.attempts = 0;
        p.updated_at = now;
        Ok(Some(p))
    })?;
    Ok(())
}
