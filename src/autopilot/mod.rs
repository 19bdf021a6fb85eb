//! Windows Autopilot: deployment profiles (and their `AutopilotConfigurationFile.json` export),
//! registered Autopilot devices (hardware-hash CSV import), the link between a registered device
//! and the enrolled device whose SMBIOS serial number matches, and what follows from that link
//! (group tag, TenantLockdown).
//!
//! | module | role |
//! |---|---|
//! | [`profile`] | the profile record and its setting rules (pure) |
//! | [`names`] | computer names and `%SERIAL%`/`%RAND:n%` templates (pure) |
//! | [`export`] | `AutopilotConfigurationFile.json` (pure) |
//! | [`csv`] | the `Get-WindowsAutoPilotInfo` CSV: encodings, fields, row checks (pure) |
//! | [`profiles`] | profiles in the record table (unique names, one all-groups profile) |
//! | [`devices`] | registered devices in the record table: import, list, edit |
//! | [`hwhash`] | what two hardware hashes can be compared on (pure) |
//! | [`link`] | the enrollment and management hooks that link devices |

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::mdm::commands::CommandError;
use crate::store::records::{Kind, RecordStore};
use crate::store::{Device, StoreError};

pub mod convert;
pub mod csv;
pub mod devices;
pub mod export;
pub mod hwhash;
pub mod link;
pub mod names;
pub mod profile;
pub mod profiles;

pub use profile::{DeviceType, Profile};

/// Server-wide Autopilot settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Queue TenantLockdown `RequireNetworkInOOBE = true` for every device enrolled through
    /// Autopilot (a profile's own `tenant_lockdown` overrides this).
    pub tenant_lockdown: bool,
}

/// The settings record (one key).
pub const SETTINGS: Kind<Settings> = Kind::new("autopilot_settings");
const SETTINGS_KEY: &str = "global";

/// The current settings (defaults when never set).
pub fn settings(s: &dyn RecordStore) -> Result<Settings, StoreError> {
    Ok(SETTINGS.get(s, SETTINGS_KEY)?.unwrap_or_default())
}

/// Replaces the settings.
pub fn put_settings(s: &dyn RecordStore, v: &Settings) -> Result<(), StoreError> {
    SETTINGS.put(s, SETTINGS_KEY, v)
}

/// `OSEdition` values of Windows Holographic (MS-MDE2 §2.2.9.6: `PRODUCT_HOLOGRAPHIC` 135,
/// `PRODUCT_HOLOGRAPHIC_BUSINESS` 136).
pub const HOLOGRAPHIC_EDITIONS: [&str; 2] = ["135", "136"];

/// Whether `d` is a HoloLens (Windows Holographic edition at enrollment, or a `DeviceType`
/// naming HoloLens/Holographic).
pub fn is_hololens(d: &Device) -> bool {
    let edition = d
        .os_edition
        .as_deref()
        .map(str::trim)
        .is_some_and(|e| HOLOGRAPHIC_EDITIONS.contains(&e));
    let ty = d.device_type.as_deref().is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t.contains("hololens") || t.contains("holographic")
    });
    edition || ty
}

/// The kind of device group a profile is being assigned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    /// A group of Windows PCs (or of any devices).
    Standard,
    /// A group of HoloLens devices.
    HoloLens,
}

/// Why a profile cannot be assigned to a group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    /// A Windows PC profile for a HoloLens group.
    #[error("the Autopilot profile {profile:?} is for Windows PCs and cannot be assigned to a HoloLens group; use a HoloLens profile (self-deploying)")]
    WindowsPcProfileOnHoloLensGroup {
        /// Profile name.
        profile: String,
    },
}

/// Checks that `profile` may be assigned to a group of `kind` (the admin API answers 409 when
/// it may not).
pub fn check_assignment(profile: &Profile, kind: GroupKind) -> Result<(), AssignmentError> {
    match (profile.device_type, kind) {
        (DeviceType::WindowsPc, GroupKind::HoloLens) => {
            Err(AssignmentError::WindowsPcProfileOnHoloLensGroup {
                profile: profile.name.clone(),
            })
        }
        _ => Ok(()),
    }
}

/// Which profile applies to a device in `groups`: a profile of the device's type assigned to
/// one of its groups (the oldest such, for a stable answer), else the all-groups profile if it
/// is of the device's type.
pub fn resolve_profile<'p>(
    profiles: &'p [Profile],
    groups: &[String],
    hololens: bool,
) -> Option<&'p Profile> {
    let fits = |p: &&Profile| (p.device_type == DeviceType::Hololens) == hololens;
    profiles
        .iter()
        .filter(fits)
        .filter(|p| p.groups.iter().any(|g| groups.contains(g)))
        .min_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)))
        .or_else(|| profiles.iter().filter(fits).find(|p| p.all_groups))
}

/// The device groups `device` belongs to with its current attributes
/// ([`crate::groups::matching_groups`]), so a device linked in this very round already resolves
/// the profile of the dynamic group its new group tag puts it in.
pub fn device_groups(app: &App, device: &Device) -> Result<Vec<String>, StoreError> {
    crate::groups::matching_groups(app, device)
}

/// The profile that applies to `device` (see [`resolve_profile`]).
pub fn applicable_profile(app: &App, device: &Device) -> Result<Option<Profile>, StoreError> {
    let groups = device_groups(app, device)?;
    let all = profiles::all(app.store.records())?;
    Ok(resolve_profile(&all, &groups, is_hololens(device)).cloned())
}

/// Whether TenantLockdown applies to `device`: its profile's `tenant_lockdown` when set, else
/// the global setting.
pub fn tenant_lockdown_for(app: &App, device: &Device) -> Result<bool, StoreError> {
    let global = settings(app.store.records())?.tenant_lockdown;
    Ok(applicable_profile(app, device)?
        .and_then(|p| p.tenant_lockdown)
        .unwrap_or(global))
}

/// Re-applies what follows from an Autopilot device's attributes (its link, group tag) to the
/// enrolled `device`, which the caller then stores: today TenantLockdown — a device enrolled
/// through Autopilot whose profile (or the global setting) asks for it gets
/// `RequireNetworkInOOBE = true` queued once. Called when a device is linked and when an admin
/// edits the linked Autopilot record.
pub fn on_device_attributes_changed(app: &App, device: &mut Device) -> Result<(), CommandError> {
    if device.autopilot_serial.is_none() || device.state != crate::store::DeviceState::Enrolled {
        return Ok(());
    }
    if device.tenant_lockdown != Some(true) && tenant_lockdown_for(app, device)? {
        crate::mdm::commands::set_tenant_lockdown(app, &device.device_id, true)?;
        device.tenant_lockdown = Some(true);
        tracing::info!(device_id = %device.device_id, "Autopilot device: TenantLockdown RequireNetworkInOOBE=true queued");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autopilot::profile::{DeploymentMode, ProfileInput};

    fn profile(name: &str, ty: DeviceType, groups: &[&str], all: bool, at: i64) -> Profile {
        ProfileInput {
            name: Some(name.into()),
            device_type: Some(ty),
            deployment_mode: Some(DeploymentMode::SelfDeploying),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            all_groups: all,
            ..ProfileInput::default()
        }
        .validate(name, at, at)
        .unwrap()
    }

    #[test]
    fn windows_pc_profiles_stay_off_hololens_groups() {
        let pc = profile("pc", DeviceType::WindowsPc, &[], false, 0);
        let hl = profile("hl", DeviceType::Hololens, &[], false, 0);
        assert!(matches!(
            check_assignment(&pc, GroupKind::HoloLens),
            Err(AssignmentError::WindowsPcProfileOnHoloLensGroup { .. })
        ));
        assert_eq!(check_assignment(&pc, GroupKind::Standard), Ok(()));
        assert_eq!(check_assignment(&hl, GroupKind::HoloLens), Ok(()));
        assert_eq!(check_assignment(&hl, GroupKind::Standard), Ok(()));
    }

    #[test]
    fn hololens_is_recognised() {
        let mut d = Device {
            os_edition: Some("136".into()),
            ..Default::default()
        };
        assert!(is_hololens(&d));
        d.os_edition = Some("135".into());
        assert!(is_hololens(&d));
        d.os_edition = Some("48".into());
        assert!(!is_hololens(&d));
        d.device_type = Some("HoloLens".into());
        assert!(is_hololens(&d));
    }

    #[test]
    fn group_profile_beats_all_groups_and_types_must_fit() {
        let all = profile("all", DeviceType::WindowsPc, &[], true, 1);
        let later = profile("later", DeviceType::WindowsPc, &["g1"], false, 3);
        let sales = profile("sales", DeviceType::WindowsPc, &["g1", "g2"], false, 2);
        let hl = profile("hl", DeviceType::Hololens, &["g2"], false, 0);
        let ps = vec![all, later, sales, hl];
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            resolve_profile(&ps, &g(&["g1"]), false).unwrap().name,
            "sales"
        );
        assert_eq!(resolve_profile(&ps, &g(&[]), false).unwrap().name, "all");
        assert_eq!(resolve_profile(&ps, &g(&["g2"]), true).unwrap().name, "hl");
        // No HoloLens profile for a HoloLens outside g2: the PC all-groups one does not apply.
        assert!(resolve_profile(&ps, &g(&["g1"]), true).is_none());
    }
}
