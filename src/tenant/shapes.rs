//! Graph's JSON shapes winmdm writes and reads (pure): the Autopilot device import, its
//! properties, the deployment profile with its out-of-box settings, the profile assignment,
//! Entra groups and their membership rules. Property names are Microsoft's, from the pages
//! quoted in [`super`]; Graph rejects unknown ones, so nothing else is sent.

use serde_json::{json, Map, Value};

use crate::autopilot::devices::AutopilotDevice;
use crate::autopilot::profile::{AccountType, DeploymentMode, DeviceType, Profile};

/// `@odata.type` of an imported device.
pub const IMPORTED_TYPE: &str = "#microsoft.graph.importedWindowsAutopilotDeviceIdentity";
/// `@odata.type` of an Entra-joined deployment profile.
pub const PROFILE_TYPE: &str = "#microsoft.graph.azureADWindowsAutopilotDeploymentProfile";
/// `@odata.type` of a profile assignment.
pub const ASSIGNMENT_TYPE: &str = "#microsoft.graph.windowsAutopilotDeploymentProfileAssignment";
/// `@odata.type` of a group assignment target.
pub const GROUP_TARGET_TYPE: &str = "#microsoft.graph.groupAssignmentTarget";

/// Longest value put in a membership rule.
pub const MAX_RULE_VALUE: usize = 128;
/// Most devices of a static group created at once (Graph binds at most 20 members per
/// request).
pub const MAX_STATIC_MEMBERS: usize = 20;

fn put_opt(m: &mut Map<String, Value>, k: &str, v: Option<&str>) {
    if let Some(v) = v.filter(|v| !v.is_empty()) {
        m.insert(k.into(), Value::String(v.into()));
    }
}

/// The body of `POST /deviceManagement/importedWindowsAutopilotDeviceIdentities`.
pub fn import_body(d: &AutopilotDevice) -> Value {
    let mut m = Map::new();
    m.insert("@odata.type".into(), IMPORTED_TYPE.into());
    m.insert("serialNumber".into(), d.serial.clone().into());
    m.insert("hardwareIdentifier".into(), d.hardware_hash.clone().into());
    put_opt(&mut m, "groupTag", d.group_tag.as_deref());
    put_opt(
        &mut m,
        "assignedUserPrincipalName",
        d.assigned_user.as_deref(),
    );
    put_opt(&mut m, "productKey", d.product_id.as_deref());
    Value::Object(m)
}

/// The body of `POST /deviceManagement/windowsAutopilotDeviceIdentities/{id}/updateDeviceProperties`
/// (an empty string clears a property).
pub fn update_body(d: &AutopilotDevice) -> Value {
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    json!({
        "userPrincipalName": s(&d.assigned_user),
        "addressableUserName": s(&d.user_friendly_name),
        "groupTag": s(&d.group_tag),
        "displayName": s(&d.device_name),
    })
}

/// The body creating or updating `p` as an `azureADWindowsAutopilotDeploymentProfile`
/// (`outOfBoxExperienceSetting`, the current property; self-deploying is `deviceUsageType`
/// `shared`).
pub fn profile_body(p: &Profile) -> Value {
    json!({
        "@odata.type": PROFILE_TYPE,
        "displayName": p.name,
        "description": p.description.clone().unwrap_or_default(),
        "locale": p.language.clone().unwrap_or_else(|| "os-default".into()),
        "deviceNameTemplate": p.device_name_template.clone().unwrap_or_default(),
        "deviceType": match p.device_type {
            DeviceType::WindowsPc => "windowsPc",
            DeviceType::Hololens => "holoLens",
        },
        "preprovisioningAllowed": p.allow_pre_provisioning,
        "hardwareHashExtractionEnabled": p.convert_all_targeted,
        "outOfBoxExperienceSetting": {
            "@odata.type": "microsoft.graph.outOfBoxExperienceSetting",
            "privacySettingsHidden": p.hides_privacy_settings(),
            "eulaHidden": p.hides_license_terms(),
            "userType": match p.user_account_type {
                AccountType::Administrator => "administrator",
                AccountType::Standard => "standard",
            },
            "deviceUsageType": match p.deployment_mode {
                DeploymentMode::SelfDeploying => "shared",
                DeploymentMode::UserDriven => "singleUser",
            },
            "keyboardSelectionPageSkipped": p.auto_configure_keyboard,
            "escapeLinkHidden": p.hides_change_account_options(),
        },
    })
}

/// `@odata.type` of the all-devices assignment target.
pub const ALL_DEVICES_TARGET_TYPE: &str = "#microsoft.graph.allDevicesAssignmentTarget";
/// The group id that stands for "all devices" in an assignment (the seed's "Assign to all Entra
/// ID Groups"; Microsoft allows one such profile per tenant).
pub const ALL_DEVICES: &str = "all-devices";

/// The body of `POST /deviceManagement/windowsAutopilotDeploymentProfiles/{id}/assignments`:
/// an Entra group, or [`ALL_DEVICES`].
pub fn assignment_body(group_id: &str) -> Value {
    let target = if group_id == ALL_DEVICES {
        json!({ "@odata.type": ALL_DEVICES_TARGET_TYPE })
    } else {
        json!({ "@odata.type": GROUP_TARGET_TYPE, "groupId": group_id })
    };
    json!({ "@odata.type": ASSIGNMENT_TYPE, "target": target })
}

/// Which devices a new Entra group holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// Dynamic: Autopilot devices with this group tag (`[OrderID]:<tag>`).
    GroupTag(String),
    /// Dynamic: the Autopilot device with this ZTDId (`[ZTDId]:<id>`).
    ZtdId(String),
    /// Dynamic: every Autopilot device (`[ZTDid]` prefix).
    AllAutopilot,
    /// Static: these directory object ids.
    Static(Vec<String>),
}

fn rule_value(v: &str) -> Result<&str, String> {
    let v = v.trim();
    if v.is_empty()
        || v.chars().count() > MAX_RULE_VALUE
        || v.chars().any(|c| c.is_control() || c == '"' || c == '\\')
    {
        return Err(format!(
            "{v:?}: give 1 to {MAX_RULE_VALUE} characters without quotes, backslashes or control characters"
        ));
    }
    Ok(v)
}

impl Membership {
    /// The dynamic membership rule (`None` for a static group), or why the value is refused.
    pub fn rule(&self) -> Result<Option<String>, String> {
        Ok(match self {
            Membership::GroupTag(t) => Some(format!(
                "(device.devicePhysicalIds -any (_ -eq \"[OrderID]:{}\"))",
                rule_value(t)?
            )),
            Membership::ZtdId(z) => Some(format!(
                "(device.devicePhysicalIds -any (_ -eq \"[ZTDId]:{}\"))",
                rule_value(z)?
            )),
            Membership::AllAutopilot => {
                Some("(device.devicePhysicalIDs -any (_ -startsWith \"[ZTDid]\"))".into())
            }
            Membership::Static(_) => None,
        })
    }
}

/// A `mailNickname` from a display name: letters, digits, `-`, `_`, `.` (at most 40) and a
/// random suffix (Graph requires it; it must be unique in the tenant).
pub fn mail_nickname(name: &str, suffix: &str) -> String {
    let mut n: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(40)
        .collect();
    if n.is_empty() {
        n = "winmdm-group".into();
    }
    format!("{n}-{suffix}")
}

/// The body of `POST /v1.0/groups`: a security group, dynamic (`DynamicMembership` with its
/// rule, processing `On`) or static (members bound by `members@odata.bind`).
pub fn group_body(
    display_name: &str,
    description: Option<&str>,
    nickname: &str,
    m: &Membership,
    graph_url: &str,
) -> Result<Value, String> {
    let mut g = Map::new();
    g.insert("displayName".into(), display_name.into());
    put_opt(&mut g, "description", description);
    g.insert("mailEnabled".into(), false.into());
    g.insert("mailNickname".into(), nickname.into());
    g.insert("securityEnabled".into(), true.into());
    match m.rule()? {
        Some(rule) => {
            g.insert("groupTypes".into(), json!(["DynamicMembership"]));
            g.insert("membershipRule".into(), rule.into());
            g.insert("membershipRuleProcessingState".into(), "On".into());
        }
        None => {
            g.insert("groupTypes".into(), json!([]));
            if let Membership::Static(ids) = m {
                if !ids.is_empty() {
                    let binds: Vec<String> = ids
                        .iter()
                        .map(|id| format!("{graph_url}/v1.0/directoryObjects/{id}"))
                        .collect();
                    g.insert("members@odata.bind".into(), json!(binds));
                }
            }
        }
    }
    Ok(Value::Object(g))
}

/// An Autopilot device as Graph lists it (`windowsAutopilotDeviceIdentity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteDevice {
    /// `id`.
    pub id: String,
    /// `serialNumber`.
    pub serial: String,
    /// `groupTag`.
    pub group_tag: Option<String>,
    /// `userPrincipalName`.
    pub user: Option<String>,
    /// `addressableUserName`.
    pub addressable_user_name: Option<String>,
    /// `displayName`.
    pub display_name: Option<String>,
    /// `productKey`.
    pub product_key: Option<String>,
    /// `azureActiveDirectoryDeviceId`.
    pub aad_device_id: Option<String>,
}

fn s(v: &Value, k: &str) -> Option<String> {
    v[k].as_str()
        .map(str::trim)
        .filter(|x| !x.is_empty() && x.len() <= 512)
        .map(str::to_string)
}

/// Reads one listed identity (`None`: no id or serial number, or absurd sizes).
pub fn remote_device(v: &Value) -> Option<RemoteDevice> {
    Some(RemoteDevice {
        id: s(v, "id")?,
        serial: s(v, "serialNumber")?,
        group_tag: s(v, "groupTag"),
        user: s(v, "userPrincipalName"),
        addressable_user_name: s(v, "addressableUserName"),
        display_name: s(v, "displayName"),
        product_key: s(v, "productKey"),
        aad_device_id: s(v, "azureActiveDirectoryDeviceId"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_microsofts_and_refuse_injection() {
        assert_eq!(
            Membership::GroupTag("Sales".into())
                .rule()
                .unwrap()
                .unwrap(),
            r#"(device.devicePhysicalIds -any (_ -eq "[OrderID]:Sales"))"#
        );
        assert_eq!(
            Membership::ZtdId("abc".into()).rule().unwrap().unwrap(),
            r#"(device.devicePhysicalIds -any (_ -eq "[ZTDId]:abc"))"#
        );
        assert!(Membership::GroupTag("x\") -or (true".into())
            .rule()
            .is_err());
        assert!(Membership::GroupTag("".into()).rule().is_err());
    }

    #[test]
    fn dynamic_group_body() {
        let b = group_body(
            "Autopilot Sales",
            None,
            &mail_nickname("Autopilot Sales", "ab12"),
            &Membership::GroupTag("Sales".into()),
            "https://graph.microsoft.com",
        )
        .unwrap();
        assert_eq!(b["mailNickname"], "AutopilotSales-ab12");
        assert_eq!(b["groupTypes"], json!(["DynamicMembership"]));
        assert_eq!(b["membershipRuleProcessingState"], "On");
        assert_eq!(b["securityEnabled"], true);
        assert_eq!(b["mailEnabled"], false);
        let s = group_body(
            "S",
            Some("d"),
            "s-1",
            &Membership::Static(vec!["o1".into()]),
            "https://g",
        )
        .unwrap();
        assert_eq!(
            s["members@odata.bind"],
            json!(["https://g/v1.0/directoryObjects/o1"])
        );
        assert!(s.get("membershipRule").is_none());
    }
}
