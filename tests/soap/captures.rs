//! Every captured device request parses with the field values the device sent.

use winmdm::soap::{
    negotiate_version, parse_discover, parse_get_policies, parse_rst, Credential, EnrollmentType,
    RequestType,
};

use super::capture;

const DISCOVERY: [(&str, &str); 2] = [
    (
        "fleet/trace-ngrok-01-device-discover-request.xml",
        "demo@fleetdm.ngrok.io",
    ),
    (
        "peers/marcosd4h-mdm-poc/02-discovery-post-request.xml",
        "demo@pocmdmserver.com",
    ),
];

const POLICY: [(&str, &str); 2] = [
    (
        "fleet/trace-ngrok-03-device-getpolicies-request-usernametoken.xml",
        "demio",
    ),
    (
        "peers/marcosd4h-mdm-poc/03-policy-request.xml",
        "demo@pocmdmserver.com",
    ),
];

const ENROLL: [(&str, &str, &str); 3] = [
    (
        "fleet/trace-ngrok-05-device-rst-wstep-request-pkcs10.xml",
        "B5B954E81FBCB94EB79BD08BE625F4EE",
        "demio",
    ),
    (
        "fleet/trace-readme-05-device-rst-wstep-request-pkcs10.xml",
        "1E08C6E95D8BB843B1278FF45BC60CC6",
        "demo@mdmwindows.com",
    ),
    (
        "peers/marcosd4h-mdm-poc/04-enroll-request.xml",
        "1E08C6E95D8BB843B1278FF45BC60CC6",
        "demo@pocmdmserver.com",
    ),
];

/// All captured request bodies (for the garbage battery).
pub const ALL_REQUESTS: [&str; 7] = [
    DISCOVERY[0].0,
    DISCOVERY[1].0,
    POLICY[0].0,
    POLICY[1].0,
    ENROLL[0].0,
    ENROLL[1].0,
    ENROLL[2].0,
];

#[test]
fn soap_captured_discover_requests_parse() {
    for (file, email) in DISCOVERY {
        let Some(body) = capture(file) else { return };
        let r = parse_discover(&body).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            r.message_id.as_deref(),
            Some("urn:uuid:748132ec-a575-4329-b01b-6171a9cf8478")
        );
        assert_eq!(r.email.as_deref(), Some(email));
        assert_eq!(r.request_version.as_deref(), Some("4.0"));
        assert_eq!(r.device_type.as_deref(), Some("CIMClient_Windows"));
        assert_eq!(r.application_version.as_deref(), Some("10.0.19043.2364"));
        assert_eq!(r.os_edition.as_deref(), Some("72"));
        assert_eq!(r.auth_policies, ["OnPremise", "Federated"]);
        assert_eq!(negotiate_version(r.request_version.as_deref()), "4.0");
    }
}

#[test]
fn soap_captured_policy_requests_parse() {
    for (file, user) in POLICY {
        let Some(body) = capture(file) else { return };
        let r = parse_get_policies(&body).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            r.message_id.as_deref(),
            Some("urn:uuid:72048B64-0F19-448F-8C2E-B4C661860AA0")
        );
        assert_eq!(
            r.credential,
            Credential::UsernameToken {
                username: user.into(),
                password: "demo".into()
            }
        );
    }
}

/// Length of a DER SEQUENCE from its header, to prove the CSR bytes are intact.
fn der_total_len(der: &[u8]) -> usize {
    assert_eq!(der[0], 0x30, "not a SEQUENCE");
    match der[1] {
        n if n < 0x80 => 2 + n as usize,
        0x81 => 3 + der[2] as usize,
        0x82 => 4 + ((der[2] as usize) << 8 | der[3] as usize),
        other => panic!("unexpected DER length form {other:#x}"),
    }
}

#[test]
fn soap_captured_enroll_requests_parse() {
    for (file, device_id, user) in ENROLL {
        let Some(body) = capture(file) else { return };
        let r = parse_rst(&body).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            r.message_id.as_deref(),
            Some("urn:uuid:0d5a1441-5891-453b-becf-a2e5f6ea3749")
        );
        assert_eq!(
            r.credential,
            Credential::UsernameToken {
                username: user.into(),
                password: "demo".into()
            }
        );
        assert_eq!(r.request_type, RequestType::Issue);
        assert_eq!(
            r.token_type.as_deref(),
            Some("http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentToken")
        );
        assert_eq!(
            r.csr_value_type,
            "http://schemas.microsoft.com/windows/pki/2009/01/enrollment#PKCS10"
        );
        assert_eq!(
            der_total_len(&r.csr_der),
            r.csr_der.len(),
            "{file}: CSR truncated"
        );
        assert!(r.csr_der.len() > 600, "RSA-2048 CSR expected");
        // The CSR carries the DeviceID in extension 1.3.6.1.4.1.311.66.1.0 (UTF-16 or ASCII).
        let c = &r.context;
        assert_eq!(c.device_id(), Some(device_id));
        assert_eq!(
            c.hw_dev_id(),
            Some("3B3ED6D0EA88CBFCF37D36F90F22FE61172348C0162FC3840D6703149870CE76")
        );
        assert_eq!(c.enrollment_type(), EnrollmentType::Full);
        assert_eq!(c.get("EnrollmentType"), Some("Full"));
        assert_eq!(c.device_type(), Some("CIMClient_Windows"));
        assert_eq!(c.device_name(), Some("DESKTOP-28FGAI6"));
        assert_eq!(c.os_version(), Some("10.0.19043.2364"));
        assert_eq!(c.application_version(), Some("10.0.19043.2364"));
        assert_eq!(c.os_edition(), Some("72"));
        assert_eq!(c.locale(), Some("en-US"));
        let macs: Vec<&str> = c.macs().collect();
        assert_eq!(
            macs,
            [
                "00-0C-29-51-60-9D",
                "1A-77-20-52-41-53",
                "1A-77-20-52-41-53",
                "00-0C-29-51-60-A7",
                "18-14-20-52-41-53",
                "00-0C-29-51-60-93"
            ]
        );
        assert_eq!(c.bool_item("UXInitiated"), Some(true));
        assert_eq!(c.bool_item("TargetedUserLoggedIn"), Some(true));
        assert_eq!(c.bool_item("NotInOobe"), Some(false));
        assert_eq!(c.items.len(), 18, "all items kept, in order");
        assert_eq!(c.items[0].0, "UXInitiated");
    }
}
