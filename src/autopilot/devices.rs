//! Registered Autopilot devices (hardware hashes imported from CSV), keyed by serial number
//! ([`serial_key`]: trimmed, upper case), with their admin-editable attributes and the id of
//! the enrolled device they were linked to.

use serde::{Deserialize, Deserializer, Serialize};

use crate::store::records::{Kind, RecordStore};
use crate::store::StoreError;

use super::csv::{self, serial_key, Parsed, RowError};
use super::names;
use super::profile::FieldError;

/// Autopilot devices by [`serial_key`].
pub const DEVICES: Kind<AutopilotDevice> = Kind::new("autopilot_device");

/// Rows written per atomic batch on import.
pub const IMPORT_BATCH: usize = 500;
/// Most data rows one import may hold.
pub const MAX_IMPORT_ROWS: usize = 20_000;
/// Longest user-friendly name.
pub const MAX_FRIENDLY_NAME: usize = 128;

/// A registered Autopilot device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotDevice {
    /// Serial number as imported.
    pub serial: String,
    /// Windows Product ID, if the file had one.
    pub product_id: Option<String>,
    /// Hardware hash (base64).
    pub hardware_hash: String,
    /// Group tag (used by dynamic device groups).
    pub group_tag: Option<String>,
    /// Assigned user (UPN).
    pub assigned_user: Option<String>,
    /// Name greeting the assigned user during OOBE (needs `assigned_user`).
    pub user_friendly_name: Option<String>,
    /// Computer name for this device (cannot be unset once set).
    pub device_name: Option<String>,
    /// DeviceID of the enrolled device whose SMBIOS serial number matched.
    pub linked_device_id: Option<String>,
    /// When it was linked (Unix seconds).
    pub linked_at: Option<i64>,
    /// When it was imported (Unix seconds).
    pub imported_at: i64,
    /// How the linked device's own hardware hash compared with this record's at the link:
    /// `match` or `unverified` (this record's hash does not decode; see `super::hwhash`).
    #[serde(default)]
    pub hash_check: Option<String>,
    /// Enrolled devices that claimed this serial and were refused the link (another enrolled
    /// device holds it, or their hardware hash disagrees), most recent last, at most
    /// [`MAX_CONFLICTS`]. An admin resolves them (`linked_device_id` in a patch).
    #[serde(default)]
    pub conflicts: Vec<LinkConflict>,
}

/// Conflicts kept per Autopilot device.
pub const MAX_CONFLICTS: usize = 10;

/// A refused claim on a registered serial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkConflict {
    /// The enrolled device that claimed it.
    pub device_id: String,
    /// Why it was not linked.
    pub reason: String,
    /// When (Unix seconds).
    pub at: i64,
}

/// An Autopilot device as lists show it (the hardware hash left out: 4 KB each).
#[derive(Debug, Clone, Serialize)]
pub struct DeviceSummary<'a> {
    /// Serial number.
    pub serial: &'a str,
    /// Windows Product ID.
    pub product_id: Option<&'a str>,
    /// Group tag.
    pub group_tag: Option<&'a str>,
    /// Assigned user.
    pub assigned_user: Option<&'a str>,
    /// User-friendly name.
    pub user_friendly_name: Option<&'a str>,
    /// Computer name.
    pub device_name: Option<&'a str>,
    /// Linked enrolled device.
    pub linked_device_id: Option<&'a str>,
    /// When it was linked.
    pub linked_at: Option<i64>,
    /// When it was imported.
    pub imported_at: i64,
    /// Refused claims on this serial (see [`AutopilotDevice::conflicts`]).
    pub conflicts: &'a [LinkConflict],
}

impl<'a> From<&'a AutopilotDevice> for DeviceSummary<'a> {
    fn from(d: &'a AutopilotDevice) -> Self {
        DeviceSummary {
            serial: &d.serial,
            product_id: d.product_id.as_deref(),
            group_tag: d.group_tag.as_deref(),
            assigned_user: d.assigned_user.as_deref(),
            user_friendly_name: d.user_friendly_name.as_deref(),
            device_name: d.device_name.as_deref(),
            linked_device_id: d.linked_device_id.as_deref(),
            linked_at: d.linked_at,
            imported_at: d.imported_at,
            conflicts: &d.conflicts,
        }
    }
}

/// The answer to an import.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// Devices registered.
    pub imported: usize,
    /// Rows refused, by row number.
    pub errors: Vec<RowError>,
    /// Serial numbers registered (for the tenant sync; not shown).
    #[serde(skip)]
    pub serials: Vec<String>,
}

/// Registers the good rows of a parsed file in batches of [`IMPORT_BATCH`], each one atomic and
/// conditional on every serial being new; a serial registered before (or by a concurrent
/// import) is a row error.
pub fn import(s: &dyn RecordStore, parsed: Parsed, now: i64) -> Result<ImportReport, StoreError> {
    let mut report = ImportReport {
        imported: 0,
        errors: parsed.errors,
        serials: Vec::new(),
    };
    let taken = |row: usize, serial: &str| RowError {
        row,
        error: format!("device serial number {serial:?} is already registered"),
    };
    for chunk in parsed.rows.chunks(IMPORT_BATCH) {
        let mut fresh = Vec::with_capacity(chunk.len());
        for r in chunk {
            if s.get_record(DEVICES.name, &serial_key(&r.serial))?
                .is_some()
            {
                report.errors.push(taken(r.row, &r.serial));
            } else {
                fresh.push(r);
            }
        }
        let record = |r: &csv::Row| AutopilotDevice {
            serial: r.serial.clone(),
            product_id: r.product_id.clone(),
            hardware_hash: r.hardware_hash.clone(),
            group_tag: r.group_tag.clone(),
            assigned_user: r.assigned_user.clone(),
            user_friendly_name: None,
            device_name: None,
            linked_device_id: None,
            linked_at: None,
            imported_at: now,
            hash_check: None,
            conflicts: Vec::new(),
        };
        let mut ops = Vec::with_capacity(fresh.len() * 2);
        for r in &fresh {
            let key = serial_key(&r.serial);
            ops.push(DEVICES.expect_absent(&key));
            ops.push(DEVICES.put_op(&key, &record(r)));
        }
        if s.apply_records(&ops)? {
            report.imported += fresh.len();
            report
                .serials
                .extend(fresh.iter().map(|r| r.serial.clone()));
            continue;
        }
        // Another writer registered one of these meanwhile: one row at a time.
        for r in fresh {
            if DEVICES.insert_new(s, &serial_key(&r.serial), &record(r))? {
                report.imported += 1;
                report.serials.push(r.serial.clone());
            } else {
                report.errors.push(taken(r.row, &r.serial));
            }
        }
    }
    report.errors.sort_by_key(|e| e.row);
    Ok(report)
}

/// Conditions of a device list (all given ones must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Serial number starts with this (case-insensitive).
    pub serial: Option<String>,
    /// Group tag equals this (case-insensitive).
    pub group_tag: Option<String>,
    /// Assigned user equals this (case-insensitive).
    pub user: Option<String>,
    /// Linked to an enrolled device, or not.
    pub linked: Option<bool>,
}

impl Filter {
    /// Whether `d` satisfies every condition.
    pub fn matches(&self, d: &AutopilotDevice) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| {
            want.as_deref().is_none_or(|w| {
                have.as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(w.trim()))
            })
        };
        self.serial
            .as_deref()
            .is_none_or(|p| serial_key(&d.serial).starts_with(&serial_key(p)))
            && eq(&self.group_tag, &d.group_tag)
            && eq(&self.user, &d.assigned_user)
            && self
                .linked
                .is_none_or(|l| l == d.linked_device_id.is_some())
    }
}

/// One page of devices matching `filter` after the cursor `after` (a serial key), examining at
/// most `scan_budget` records; the cursor returned continues after the last record examined
/// (`None` at the end).
pub fn list(
    s: &dyn RecordStore,
    after: Option<&str>,
    limit: usize,
    filter: &Filter,
    scan_budget: usize,
) -> Result<(Vec<AutopilotDevice>, Option<String>), StoreError> {
    let prefix = filter.serial.as_deref().map(serial_key);
    let mut out = Vec::new();
    let mut cursor = after.map(str::to_string);
    // A serial prefix: start at the prefix itself (keys sort as strings).
    if let Some(p) = &prefix {
        if cursor.as_deref().is_none_or(|c| c < p.as_str()) {
            if let Some(d) = DEVICES.get(s, p)? {
                if filter.matches(&d) {
                    out.push(d);
                }
            }
            cursor = Some(p.clone());
        }
    }
    let mut scanned = 0;
    let chunk = limit.clamp(1, 1000);
    loop {
        if out.len() >= limit {
            return Ok((out, cursor));
        }
        let page = DEVICES.list(s, cursor.as_deref(), chunk)?;
        let exhausted = page.len() < chunk;
        for (key, d) in page {
            if prefix.as_deref().is_some_and(|p| !key.starts_with(p)) {
                return Ok((out, None));
            }
            scanned += 1;
            cursor = Some(key);
            if filter.matches(&d) {
                out.push(d);
                if out.len() == limit {
                    return Ok((out, cursor));
                }
            }
            if scanned >= scan_budget {
                return Ok((out, cursor));
            }
        }
        if exhausted {
            return Ok((out, None));
        }
    }
}

/// `Some(None)` for an explicit `null`, `None` when the field is absent.
fn explicit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// An admin's edit of an Autopilot device: absent fields stay, `null` unsets.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicePatch {
    /// Assigned user (UPN).
    #[serde(default, deserialize_with = "explicit")]
    pub user: Option<Option<String>>,
    /// User-friendly name (needs a user).
    #[serde(default, deserialize_with = "explicit")]
    pub user_friendly_name: Option<Option<String>>,
    /// Computer name (NetBIOS rules; cannot be unset once set).
    #[serde(default, deserialize_with = "explicit")]
    pub device_name: Option<Option<String>>,
    /// Group tag.
    #[serde(default, deserialize_with = "explicit")]
    pub group_tag: Option<Option<String>>,
    /// The enrolled device this registration belongs to (`null` unlinks): an admin's resolution
    /// of a conflict, applied by `super::link::relink` (not by [`DevicePatch::apply`]).
    #[serde(default, deserialize_with = "explicit")]
    pub linked_device_id: Option<Option<String>>,
}

fn field(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

fn blank_is_none(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

impl DevicePatch {
    /// Whether the patch changes nothing at all.
    pub fn is_empty(&self) -> bool {
        self.user.is_none()
            && self.user_friendly_name.is_none()
            && self.device_name.is_none()
            && self.group_tag.is_none()
            && self.linked_device_id.is_none()
    }

    /// `d` with the patch applied, or the first rule it breaks.
    pub fn apply(self, d: &AutopilotDevice) -> Result<AutopilotDevice, FieldError> {
        let mut n = d.clone();
        if let Some(u) = self.user {
            n.assigned_user = blank_is_none(u).map(|u| u.to_lowercase());
            if let Some(u) = &n.assigned_user {
                if !csv::valid_upn(u) {
                    return Err(field(
                        "user",
                        format!("{u:?} is not a user principal name (name@domain)"),
                    ));
                }
            } else {
                // The friendly name greets the user: it goes with them.
                n.user_friendly_name = None;
            }
        }
        if let Some(f) = self.user_friendly_name {
            let f = blank_is_none(f);
            if f.is_some() && n.assigned_user.is_none() {
                return Err(field(
                    "user_friendly_name",
                    "a user-friendly name can only be set when the device has a user; set user first",
                ));
            }
            if f.as_deref().is_some_and(|f| {
                f.chars().count() > MAX_FRIENDLY_NAME || f.chars().any(char::is_control)
            }) {
                return Err(field(
                    "user_friendly_name",
                    format!(
                        "use at most {MAX_FRIENDLY_NAME} characters without control characters"
                    ),
                ));
            }
            n.user_friendly_name = f;
        }
        if let Some(name) = self.device_name {
            match blank_is_none(name) {
                None if d.device_name.is_some() => {
                    return Err(field(
                        "device_name",
                        "the device name cannot be unset once set; give a new name instead",
                    ))
                }
                None => {}
                Some(name) => {
                    names::check_name(&name).map_err(|e| field("device_name", e.to_string()))?;
                    n.device_name = Some(name);
                }
            }
        }
        if let Some(t) = self.group_tag {
            let t = blank_is_none(t);
            if let Some(t) = &t {
                csv::check_group_tag(t).map_err(|e| field("group_tag", e))?;
            }
            n.group_tag = t;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> AutopilotDevice {
        AutopilotDevice {
            serial: "S1".into(),
            product_id: None,
            hardware_hash: "AAAA".into(),
            group_tag: None,
            assigned_user: None,
            user_friendly_name: None,
            device_name: None,
            linked_device_id: None,
            linked_at: None,
            imported_at: 0,
            hash_check: None,
            conflicts: Vec::new(),
        }
    }

    fn patch(v: serde_json::Value) -> DevicePatch {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn null_and_absent_differ() {
        let p = patch(serde_json::json!({"group_tag": null}));
        assert_eq!(p.group_tag, Some(None));
        assert_eq!(p.user, None);
    }

    #[test]
    fn friendly_name_needs_a_user() {
        let e = patch(serde_json::json!({"user_friendly_name": "Ann"}))
            .apply(&dev())
            .unwrap_err();
        assert_eq!(e.field, "user_friendly_name");
        let d = patch(serde_json::json!({"user": "Ann@Contoso.com", "user_friendly_name": "Ann"}))
            .apply(&dev())
            .unwrap();
        assert_eq!(d.assigned_user.as_deref(), Some("ann@contoso.com"));
        // Removing the user removes the greeting.
        let d = patch(serde_json::json!({"user": null})).apply(&d).unwrap();
        assert_eq!(d.user_friendly_name, None);
    }

    #[test]
    fn device_name_rules() {
        let d = patch(serde_json::json!({"device_name": "PC-01"}))
            .apply(&dev())
            .unwrap();
        for unset in [serde_json::json!(null), serde_json::json!("")] {
            let e = patch(serde_json::json!({ "device_name": unset }))
                .apply(&d)
                .unwrap_err();
            assert_eq!(e.field, "device_name");
        }
        let e = patch(serde_json::json!({"device_name": "BAD_NAME"}))
            .apply(&d)
            .unwrap_err();
        assert!(e.message.contains("'_'"), "{e}");
    }

    #[test]
    fn filter() {
        let mut d = dev();
        d.serial = "5CG123".into();
        d.group_tag = Some("Sales".into());
        let f = Filter {
            serial: Some("5cg".into()),
            group_tag: Some("sales".into()),
            linked: Some(false),
            ..Filter::default()
        };
        assert!(f.matches(&d));
        d.linked_device_id = Some("X".into());
        assert!(!f.matches(&d));
    }
}
