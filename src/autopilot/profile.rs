//! Autopilot deployment profiles: the record, what an admin sends, and the rules between the
//! settings (the "Profile settings" table of the admin guide we match, `shared/seeds/002_…`).
//!
//! Pure: no store, no HTTP. [`ProfileInput::validate`] turns a request into a [`Profile`] or the
//! first broken rule as a [`FieldError`] naming the JSON field.

use serde::{Deserialize, Serialize};

use super::names::{self, NameError};

/// Longest profile name.
pub const MAX_NAME: usize = 128;
/// Most device groups one profile may be assigned to.
pub const MAX_GROUPS: usize = 500;

/// Which hardware a profile is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceType {
    /// Windows 10/11 desktops and laptops.
    WindowsPc,
    /// HoloLens 2 (Windows Holographic).
    Hololens,
}

/// How the device is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeploymentMode {
    /// No user interaction: the device joins and enrolls on its own (TPM attestation).
    SelfDeploying,
    /// The user signs in during OOBE.
    UserDriven,
}

/// The kind of local account the signed-in user gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountType {
    /// Member of the local Administrators group.
    Administrator,
    /// A standard user.
    Standard,
}

/// Whether an OOBE page is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Visibility {
    /// The page is shown.
    Show,
    /// The page is skipped.
    Hide,
}

/// A stored Autopilot profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Server-assigned id (a lower-case GUID); also the export's `ZtdCorrelationId`.
    pub id: String,
    /// Unique name (case-insensitively).
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Hardware the profile is for.
    pub device_type: DeviceType,
    /// Deployment mode.
    pub deployment_mode: DeploymentMode,
    /// Pre-provisioning (technician phase, "white glove"); user-driven only.
    pub allow_pre_provisioning: bool,
    /// Account type of the user who signs in.
    pub user_account_type: AccountType,
    /// `None`: the operating system's default language; else a locale tag such as `fr-FR`.
    pub language: Option<String>,
    /// Skip the keyboard page (needs a language other than the default).
    pub auto_configure_keyboard: bool,
    /// Computer name template (`%SERIAL%`, `%RAND:n%`).
    pub device_name_template: Option<String>,
    /// Register every targeted device as an Autopilot device.
    pub convert_all_targeted: bool,
    /// Microsoft Software License Terms page (user-driven only; `None` = default, hidden).
    pub license_terms: Option<Visibility>,
    /// Privacy settings page (user-driven only; `None` = default, hidden).
    pub privacy_settings: Option<Visibility>,
    /// Change-account options (user-driven with a standard account only; `None` = default,
    /// hidden).
    pub change_account_options: Option<Visibility>,
    /// TenantLockdown for devices this profile applies to; `None` follows the global setting.
    pub tenant_lockdown: Option<bool>,
    /// Device group ids the profile is assigned to.
    pub groups: Vec<String>,
    /// Assigned to all groups (one profile at most).
    pub all_groups: bool,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// Last change (Unix seconds).
    pub updated_at: i64,
}

impl Profile {
    /// Whether the License Terms page is skipped (self-deploying devices never show it).
    pub fn hides_license_terms(&self) -> bool {
        self.deployment_mode == DeploymentMode::SelfDeploying
            || self.license_terms != Some(Visibility::Show)
    }

    /// Whether the privacy settings page is skipped (self-deploying devices never show it).
    pub fn hides_privacy_settings(&self) -> bool {
        self.deployment_mode == DeploymentMode::SelfDeploying
            || self.privacy_settings != Some(Visibility::Show)
    }

    /// Whether the change-account options are hidden: always for self-deploying devices (no
    /// user signs in), by default for user-driven standard accounts, never for administrators.
    pub fn hides_change_account_options(&self) -> bool {
        match (self.deployment_mode, self.user_account_type) {
            (DeploymentMode::SelfDeploying, _) => true,
            (DeploymentMode::UserDriven, AccountType::Standard) => {
                self.change_account_options != Some(Visibility::Show)
            }
            (DeploymentMode::UserDriven, AccountType::Administrator) => false,
        }
    }
}

/// A profile as an admin sends it (`POST` creates, `PUT` replaces every setting).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileInput {
    /// See [`Profile::name`].
    pub name: Option<String>,
    /// See [`Profile::description`].
    pub description: Option<String>,
    /// Required.
    pub device_type: Option<DeviceType>,
    /// Required (`self-deploying` for HoloLens).
    pub deployment_mode: Option<DeploymentMode>,
    /// Default `false`.
    #[serde(default)]
    pub allow_pre_provisioning: bool,
    /// Default `standard`.
    pub user_account_type: Option<AccountType>,
    /// `null`, absent or `"os-default"`: the OS default.
    pub language: Option<String>,
    /// Default `false`.
    #[serde(default)]
    pub auto_configure_keyboard: bool,
    /// Optional.
    pub device_name_template: Option<String>,
    /// Default `false`.
    #[serde(default)]
    pub convert_all_targeted: bool,
    /// `show`/`hide`, user-driven only.
    pub license_terms: Option<Visibility>,
    /// `show`/`hide`, user-driven only.
    pub privacy_settings: Option<Visibility>,
    /// `show`/`hide`, user-driven with a standard account only.
    pub change_account_options: Option<Visibility>,
    /// `true`/`false`, or `null` to follow the global setting.
    pub tenant_lockdown: Option<bool>,
    /// Device group ids.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Assign to all groups.
    #[serde(default)]
    pub all_groups: bool,
}

/// A broken rule: the JSON field and a message for the admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The request field at fault.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn err(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// The language value meaning "the operating system's default".
pub const OS_DEFAULT_LANGUAGE: &str = "os-default";

/// Checks a locale tag (`en-US`, `fr-FR`, `zh-Hans-CN`, `sr-Latn-RS`): a 2-3 letter language
/// subtag and up to three 2-8 character alphanumeric subtags.
pub fn valid_locale(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let Some(lang) = parts.next() else {
        return false;
    };
    let rest: Vec<&str> = parts.collect();
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_alphabetic())
        && rest.len() <= 3
        && rest
            .iter()
            .all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

impl ProfileInput {
    /// Applies every rule; on success returns the profile with `id` and times filled in.
    pub fn validate(self, id: &str, created_at: i64, now: i64) -> Result<Profile, FieldError> {
        let name = self
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| err("name", "a profile needs a name"))?
            .to_string();
        if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(err(
                "name",
                format!("use at most {MAX_NAME} characters, without control characters"),
            ));
        }
        let description = self.description.map(|d| d.trim().to_string());
        if description
            .as_deref()
            .is_some_and(|d| d.chars().count() > 1024)
        {
            return Err(err("description", "use at most 1024 characters"));
        }
        let device_type = self.device_type.ok_or_else(|| {
            err(
                "device_type",
                "choose the device type: windows-pc or hololens",
            )
        })?;
        let deployment_mode = self.deployment_mode.ok_or_else(|| {
            err(
                "deployment_mode",
                "choose the deployment mode: self-deploying or user-driven",
            )
        })?;
        if device_type == DeviceType::Hololens && deployment_mode != DeploymentMode::SelfDeploying {
            return Err(err(
                "deployment_mode",
                "HoloLens profiles must use the self-deploying deployment mode",
            ));
        }
        if self.allow_pre_provisioning && deployment_mode == DeploymentMode::SelfDeploying {
            return Err(err(
                "allow_pre_provisioning",
                "pre-provisioning is not available with the self-deploying deployment mode; \
                 use user-driven or turn pre-provisioning off",
            ));
        }
        let user_account_type = self.user_account_type.unwrap_or(AccountType::Standard);
        let language = match self.language.as_deref().map(str::trim) {
            None | Some(OS_DEFAULT_LANGUAGE) => None,
            Some(tag) if valid_locale(tag) => Some(tag.to_string()),
            Some(tag) => {
                return Err(err(
                    "language",
                    format!(
                        "{tag:?} is not a locale tag such as en-US or fr-FR \
                         (or \"{OS_DEFAULT_LANGUAGE}\" for the operating system's language)"
                    ),
                ))
            }
        };
        if self.auto_configure_keyboard && language.is_none() {
            return Err(err(
                "auto_configure_keyboard",
                "the keyboard can only be configured automatically when a language other than \
                 the operating system default is set",
            ));
        }
        let device_name_template = match self.device_name_template.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(t) => {
                names::check_template(t)
                    .map_err(|e: NameError| err("device_name_template", e.to_string()))?;
                Some(t.to_string())
            }
        };
        let user_driven = deployment_mode == DeploymentMode::UserDriven;
        if self.license_terms.is_some() && !user_driven {
            return Err(err(
                "license_terms",
                "showing or hiding the Microsoft Software License Terms is only possible in \
                 user-driven mode (self-deploying devices never show them)",
            ));
        }
        if self.privacy_settings.is_some() && !user_driven {
            return Err(err(
                "privacy_settings",
                "showing or hiding the privacy settings is only possible in user-driven mode \
                 (self-deploying devices never show them)",
            ));
        }
        if self.change_account_options.is_some()
            && !(user_driven && user_account_type == AccountType::Standard)
        {
            return Err(err(
                "change_account_options",
                "showing or hiding the change-account options is only possible in user-driven \
                 mode with a standard user account",
            ));
        }
        let mut groups: Vec<String> = Vec::with_capacity(self.groups.len());
        for g in self.groups {
            let g = g.trim().to_string();
            if g.is_empty() || g.len() > 128 || g.chars().any(char::is_control) {
                return Err(err(
                    "groups",
                    "group ids are 1-128 characters without control characters",
                ));
            }
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        if groups.len() > MAX_GROUPS {
            return Err(err(
                "groups",
                format!("assign the profile to at most {MAX_GROUPS} groups (or to all groups)"),
            ));
        }
        Ok(Profile {
            id: id.to_string(),
            name,
            description: description.filter(|d| !d.is_empty()),
            device_type,
            deployment_mode,
            allow_pre_provisioning: self.allow_pre_provisioning,
            user_account_type,
            language,
            auto_configure_keyboard: self.auto_configure_keyboard,
            device_name_template,
            convert_all_targeted: self.convert_all_targeted,
            license_terms: self.license_terms,
            privacy_settings: self.privacy_settings,
            change_account_options: self.change_account_options,
            tenant_lockdown: self.tenant_lockdown,
            groups,
            all_groups: self.all_groups,
            created_at,
            updated_at: now,
        })
    }
}

/// A new profile id: a random (version 4) GUID, lower case.
pub fn new_id() -> String {
    let h = crate::clock::random_hex(16);
    // Set the version (4) and variant (10xx) nibbles.
    let mut c: Vec<char> = h.chars().collect();
    c[12] = '4';
    c[16] = match c[16] {
        '0' | '4' | '8' | 'c' => '8',
        '1' | '5' | '9' | 'd' => '9',
        '2' | '6' | 'a' | 'e' => 'a',
        _ => 'b',
    };
    let h: String = c.into_iter().collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ProfileInput {
        ProfileInput {
            name: Some("Sales".into()),
            device_type: Some(DeviceType::WindowsPc),
            deployment_mode: Some(DeploymentMode::UserDriven),
            ..ProfileInput::default()
        }
    }

    #[test]
    fn defaults_are_those_of_the_admin_guide() {
        let p = base().validate("id", 1, 2).unwrap();
        assert_eq!(p.user_account_type, AccountType::Standard);
        assert!(p.language.is_none());
        assert!(p.hides_license_terms() && p.hides_privacy_settings());
        assert!(p.hides_change_account_options());
        assert_eq!((p.created_at, p.updated_at), (1, 2));
    }

    #[test]
    fn locale_tags() {
        for ok in ["en-US", "fr-FR", "zh-Hans-CN", "sr-Latn-RS", "de"] {
            assert!(valid_locale(ok), "{ok}");
        }
        for bad in [
            "",
            "e",
            "english",
            "en_US",
            "en-",
            "-US",
            "en-US-x-y-z",
            "en US",
        ] {
            assert!(!valid_locale(bad), "{bad}");
        }
    }

    #[test]
    fn os_default_language_is_none() {
        let mut i = base();
        i.language = Some("os-default".into());
        assert_eq!(i.validate("id", 0, 0).unwrap().language, None);
    }

    #[test]
    fn ids_are_version_4_guids() {
        let id = new_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!("89ab".contains(&id[19..20]));
        assert_ne!(id, new_id());
    }
}
