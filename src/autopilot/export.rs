//! `AutopilotConfigurationFile.json`: the file Windows reads from
//! `%WINDIR%\Provisioning\Autopilot\` to run Autopilot on an existing device ("Windows Autopilot
//! for existing devices"), written from a [`Profile`].
//!
//! Where each field's meaning comes from, and which are uncertain, is listed in
//! `protocol-fixtures/autopilot/README.md`. Pure; the output is deterministic (the
//! `ZtdCorrelationId` is the profile id) and ASCII only (non-ASCII characters are written as
//! `\uXXXX` escapes, so the file reads the same in the ANSI encoding Microsoft asks for).

use serde::Serialize;

use super::profile::{AccountType, DeploymentMode, Profile};

/// `Version` of the file format Microsoft's samples and tools write.
pub const FILE_VERSION: u32 = 2049;
/// `CloudAssignedAutopilotUpdateTimeout` (ms) written by Microsoft's tooling.
pub const UPDATE_TIMEOUT_MS: u32 = 1_800_000;

/// `CloudAssignedOobeConfig` bits.
pub mod oobe {
    /// Skip the Cortana opt-in page.
    pub const SKIP_CORTANA_OPT_IN: u32 = 1;
    /// The user who signs in is not made a local administrator (standard account).
    pub const OOBE_USER_NOT_LOCAL_ADMIN: u32 = 2;
    /// Skip the privacy ("express") settings page.
    pub const SKIP_EXPRESS_SETTINGS: u32 = 4;
    /// Skip OEM registration pages.
    pub const SKIP_OEM_REGISTRATION: u32 = 8;
    /// Skip the Microsoft Software License Terms page.
    pub const SKIP_EULA: u32 = 16;
    /// Set with 64 for self-deploying ("shared device") profiles by Microsoft's tooling; read as
    /// TPM required (uncertain name).
    pub const TPM_REQUIRED: u32 = 32;
    /// Set with 32 for self-deploying profiles; read as TPM attestation (uncertain name).
    pub const TPM_ATTESTATION: u32 = 64;
    /// Always set by Microsoft's tooling (uncertain name: patch download during OOBE).
    pub const ENABLE_PATCH_DOWNLOAD: u32 = 256;
    /// Skip the keyboard selection page.
    pub const SKIP_KEYBOARD_SELECTION: u32 = 1024;
}

/// The tenant a file is for (`--tenant-id`, `--tenant-domain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Entra tenant id (GUID).
    pub id: String,
    /// Primary domain, e.g. `contoso.onmicrosoft.com`.
    pub domain: String,
}

/// The file's fields, in the order they are written.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigurationFile {
    /// Free text (`Profile <name>`).
    #[serde(rename = "Comment_File")]
    pub comment_file: String,
    /// File format version.
    pub version: u32,
    /// Correlates the deployment; the profile id.
    pub ztd_correlation_id: String,
    /// Entra tenant id.
    pub cloud_assigned_tenant_id: String,
    /// Entra tenant primary domain (pre-fills the sign-in page).
    pub cloud_assigned_tenant_domain: String,
    /// 0 Entra join, 1 hybrid join (winmdm profiles are Entra join).
    pub cloud_assigned_domain_join_method: u8,
    /// 1: the change-account options ("escape link") are hidden.
    pub cloud_assigned_forced_enrollment: u8,
    /// OOBE pages to skip ([`oobe`] bits).
    pub cloud_assigned_oobe_config: u32,
    /// Computer name template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_assigned_device_name: Option<String>,
    /// OOBE language.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_assigned_language: Option<String>,
    /// Region (same as the language, so the region page is skipped with the keyboard's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_assigned_region: Option<String>,
    /// 1: no Autopilot component update during OOBE.
    pub cloud_assigned_autopilot_update_disabled: u8,
    /// Update timeout (ms).
    pub cloud_assigned_autopilot_update_timeout: u32,
    /// JSON text: `{"ZeroTouchConfig": {...}}`.
    pub cloud_assigned_aad_server_data: String,
}

/// The `CloudAssignedOobeConfig` value of a profile.
pub fn oobe_config(p: &Profile) -> u32 {
    let mut bits = oobe::SKIP_OEM_REGISTRATION | oobe::ENABLE_PATCH_DOWNLOAD;
    if p.user_account_type == AccountType::Standard {
        bits |= oobe::OOBE_USER_NOT_LOCAL_ADMIN;
    }
    if p.hides_privacy_settings() {
        bits |= oobe::SKIP_EXPRESS_SETTINGS;
    }
    if p.hides_license_terms() {
        bits |= oobe::SKIP_EULA;
    }
    if p.auto_configure_keyboard && p.language.is_some() {
        bits |= oobe::SKIP_KEYBOARD_SELECTION;
    }
    if p.deployment_mode == DeploymentMode::SelfDeploying {
        bits |= oobe::TPM_REQUIRED | oobe::TPM_ATTESTATION;
    }
    bits
}

/// The file's fields for `p` in `tenant`.
pub fn configuration_file(p: &Profile, tenant: &Tenant) -> ConfigurationFile {
    let forced = u8::from(p.hides_change_account_options());
    let server_data = serde_json::json!({
        "ZeroTouchConfig": {
            "CloudAssignedTenantUpn": "",
            "ForcedEnrollment": forced,
            "CloudAssignedTenantDomain": tenant.domain,
        }
    });
    ConfigurationFile {
        comment_file: format!("Profile {}", p.name),
        version: FILE_VERSION,
        ztd_correlation_id: p.id.clone(),
        cloud_assigned_tenant_id: tenant.id.clone(),
        cloud_assigned_tenant_domain: tenant.domain.clone(),
        cloud_assigned_domain_join_method: 0,
        cloud_assigned_forced_enrollment: forced,
        cloud_assigned_oobe_config: oobe_config(p),
        cloud_assigned_device_name: p.device_name_template.clone(),
        cloud_assigned_language: p.language.clone(),
        cloud_assigned_region: p.language.clone().filter(|_| p.auto_configure_keyboard),
        cloud_assigned_autopilot_update_disabled: 1,
        cloud_assigned_autopilot_update_timeout: UPDATE_TIMEOUT_MS,
        cloud_assigned_aad_server_data: ascii_only(&server_data.to_string()),
    }
}

/// The file's bytes: indented JSON, ASCII only, ending with a newline.
pub fn write(p: &Profile, tenant: &Tenant) -> String {
    let v = configuration_file(p, tenant);
    let text = serde_json::to_string_pretty(&v).unwrap_or_default();
    let mut out = ascii_only(&text);
    out.push('\n');
    out
}

/// Replaces every non-ASCII character by its JSON `\uXXXX` escape (UTF-16 units). Only valid
/// inside JSON strings, which is the only place serde_json emits them.
fn ascii_only(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autopilot::profile::{DeviceType, ProfileInput, Visibility};

    fn tenant() -> Tenant {
        Tenant {
            id: "00000000-0000-0000-0000-000000000001".into(),
            domain: "contoso.onmicrosoft.com".into(),
        }
    }

    fn user_driven() -> ProfileInput {
        ProfileInput {
            name: Some("Café".into()),
            device_type: Some(DeviceType::WindowsPc),
            deployment_mode: Some(crate::autopilot::profile::DeploymentMode::UserDriven),
            ..ProfileInput::default()
        }
    }

    #[test]
    fn bits_follow_the_settings() {
        let p = user_driven().validate("x", 0, 0).unwrap();
        // Standard user, privacy and EULA hidden by default.
        assert_eq!(oobe_config(&p), 8 + 256 + 2 + 4 + 16);
        let mut i = user_driven();
        i.user_account_type = Some(AccountType::Administrator);
        i.license_terms = Some(Visibility::Show);
        i.privacy_settings = Some(Visibility::Show);
        i.language = Some("fr-FR".into());
        i.auto_configure_keyboard = true;
        let p = i.validate("x", 0, 0).unwrap();
        assert_eq!(oobe_config(&p), 8 + 256 + 1024);
        let f = configuration_file(&p, &tenant());
        assert_eq!(f.cloud_assigned_forced_enrollment, 0);
        assert_eq!(f.cloud_assigned_region.as_deref(), Some("fr-FR"));
    }

    #[test]
    fn output_is_ascii() {
        let p = user_driven().validate("x", 0, 0).unwrap();
        let text = write(&p, &tenant());
        assert!(text.is_ascii());
        assert!(
            text.contains(r#""Comment_File": "Profile Caf\u00e9""#),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["Comment_File"], "Profile Café");
    }
}
