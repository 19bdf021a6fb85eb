//! Requests shaped like the ones Windows sends (see `../shared/conformance/`), for the test suite,
//! the benches and the load tool. Not part of the stable API.
#![allow(missing_docs)]

pub mod handshake;
pub mod load;

use crate::soap::client;
use crate::soap::enroll::AdditionalContext;
use crate::soap::envelope::Credential;

/// What a device knows about itself.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub device_id: String,
    pub hw_dev_id: String,
    pub upn: String,
    pub password: String,
    pub enrollment_type: &'static str,
    pub device_name: String,
    pub os_edition: String,
    pub request_version: String,
}

impl DeviceInfo {
    pub fn new(n: u32, upn: &str, password: &str) -> DeviceInfo {
        DeviceInfo {
            device_id: format!("{:032X}", 0xD0D0_0000u64 + u64::from(n)),
            hw_dev_id: format!("{:064X}", 0xAB00_0000u64 + u64::from(n)),
            upn: upn.into(),
            password: password.into(),
            enrollment_type: "Full",
            device_name: format!("DESKTOP-TEST{n:03}"),
            os_edition: "72".into(),
            request_version: "4.0".into(),
        }
    }
}

pub fn message_id() -> String {
    format!("urn:uuid:{}", crate::clock::random_hex(16))
}

fn text(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap_or_default()
}

/// A `Discover` request (built by [`crate::soap::client`]).
pub fn discover_xml(email: &str, request_version: &str, policies: &[&str], mid: &str) -> String {
    text(client::discover_request(
        mid,
        "https://enterpriseenrollment.example.com:443/EnrollmentServer/Discovery.svc",
        email,
        request_version,
        policies,
    ))
}

fn password(upn: &str, password: &str) -> Credential {
    Credential::UsernameToken {
        username: upn.to_string(),
        password: password.to_string(),
    }
}

/// A `GetPolicies` request with a UsernameToken.
pub fn policy_xml(upn: &str, pw: &str, to: &str, mid: &str) -> String {
    text(client::get_policies_request(mid, to, &password(upn, pw)))
}

/// An Issue RST for `info` with the AdditionalContext items Windows 11 sends.
pub fn rst_xml(info: &DeviceInfo, csr_der: &[u8], to: &str, mid: &str) -> String {
    rst_xml_with(info, csr_der, to, mid, &password(&info.upn, &info.password))
}

/// As [`rst_xml`], with any WS-Security credential (federated or Entra tokens).
pub fn rst_xml_with(
    info: &DeviceInfo,
    csr_der: &[u8],
    to: &str,
    mid: &str,
    cred: &Credential,
) -> String {
    let items = [
        ("UXInitiated", "true".to_string()),
        ("HWDevID", info.hw_dev_id.clone()),
        ("Locale", "en-US".into()),
        ("TargetedUserLoggedIn", "true".into()),
        ("OSEdition", info.os_edition.clone()),
        ("DeviceName", info.device_name.clone()),
        ("MAC", "00-0C-29-51-60-9D".into()),
        ("MAC", "00-0C-29-51-60-9D".into()),
        ("MAC", "00-0C-29-51-60-A7".into()),
        ("DeviceID", info.device_id.clone()),
        ("EnrollmentType", info.enrollment_type.into()),
        ("DeviceType", "CIMClient_Windows".into()),
        ("OSVersion", "10.0.26100.1".into()),
        ("ApplicationVersion", "10.0.26100.1".into()),
        ("NotInOobe", "false".into()),
    ];
    let context = AdditionalContext {
        items: items
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    };
    text(client::rst_issue_request(mid, to, cred, csr_der, &context))
}
