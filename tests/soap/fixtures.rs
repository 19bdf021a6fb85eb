//! Own fixtures (protocol-fixtures/) and golden responses: fixed inputs → byte-identical output.
//! `WINMDM_BLESS=1 cargo test --test main soap` rewrites the goldens.

use winmdm::soap::provisioning::build;
use winmdm::soap::{
    negotiate_version, parse_discover, parse_get_policies, parse_rst, write_discover_response,
    write_fault, write_get_policies_response, write_rstr, CertStore, Credential, DiscoverResponse,
    EnrollError, EnrollmentType, FaultAction, PolicyConfig, PollSchedule, ProvisioningDoc,
    RenewConfig, RequestType, SoapFault,
};

use super::{fixture, golden};

pub const ROOT_DER: &[u8] = b"\x30\x03root-ca-der-placeholder";
pub const CLIENT_DER: &[u8] = b"\x30\x03client-cert-der-placeholder";
pub const CREATED: &str = "2026-01-02T03:04:05.000Z";
pub const EXPIRES: &str = "2026-01-02T03:09:05.000Z";

pub fn sample_discover_response(relates_to: Option<&str>) -> DiscoverResponse {
    DiscoverResponse {
        relates_to: relates_to.map(str::to_owned),
        auth_policy: "OnPremise".into(),
        enrollment_version: "4.0".into(),
        policy_url: "https://mdm.example.com/EnrollmentServer/Policy.svc".into(),
        enrollment_url: "https://mdm.example.com/EnrollmentServer/Enrollment.svc".into(),
        auth_service_url: None,
    }
}

pub fn sample_doc(store: CertStore, renew: Option<RenewConfig>) -> String {
    build(&ProvisioningDoc {
        root_ca_der: ROOT_DER,
        root_thumbprint: "D9A88E04AF18A4D399CEE62F2C71469C3AE1E675",
        intermediate_ca: None,
        client_cert_der: CLIENT_DER,
        client_thumbprint: "8F2EBD13F3612D7C48C30E24CC73A88492613849",
        cert_store: store,
        provider_id: "WinMDM",
        name: "WinMDM \"Lab\" & <Test>",
        mgmt_url: "https://mdm.example.com/ManagementServer/MDM.svc",
        client_cert_subject: "CN=1E08C6E95D8BB843B1278FF45BC60CC6",
        poll: PollSchedule::default(),
        ent_dmid: "1E08C6E95D8BB843B1278FF45BC60CC6",
        ent_device_name: Some("DESKTOP-28FGAI6"),
        upn: Some("demo@example.com"),
        renew,
    })
}

pub fn sample_renew() -> RenewConfig {
    RenewConfig {
        server_url: Some("https://mdm.example.com/EnrollmentServer/Enrollment.svc".into()),
        renew_period_days: 42,
        retry_interval_days: 7,
        robo_support: true,
    }
}

/// The faults we golden-test: (file stem, error).
pub fn sample_faults() -> Vec<(&'static str, EnrollError)> {
    let r = |s: &str| s.to_string();
    vec![
        (
            "message-format",
            EnrollError::MessageFormat {
                reason: r("missing required element wst:RequestType"),
            },
        ),
        (
            "authentication",
            EnrollError::Authentication {
                reason: r("internal: bad password for alice"),
            },
        ),
        (
            "authorization",
            EnrollError::Authorization {
                reason: r("This user isn't authorized to enroll"),
            },
        ),
        (
            "certificate-request",
            EnrollError::CertificateRequest {
                reason: r("RSA key shorter than 2048 bits"),
            },
        ),
        (
            "enrollment-server",
            EnrollError::EnrollmentServer {
                reason: r("store: I/O error on /var/lib/winmdm"),
            },
        ),
        (
            "invalid-security",
            EnrollError::InvalidSecurity {
                reason: r("missing wsse:Security header"),
            },
        ),
        (
            "device-not-supported",
            EnrollError::DeviceNotSupported {
                reason: r("Windows Phone is not supported"),
            },
        ),
        (
            "not-supported",
            EnrollError::NotSupported {
                reason: r("unsupported wst:RequestType"),
            },
        ),
        (
            "not-eligible-to-renew",
            EnrollError::NotEligibleToRenew {
                reason: r("certificate not issued by this server"),
            },
        ),
        (
            "device-cap-reached",
            EnrollError::DeviceCapReached {
                reason: r("Too many devices"),
            },
        ),
        (
            "in-maintenance",
            EnrollError::InMaintenance {
                reason: r("Service in maintenance"),
            },
        ),
    ]
}

#[test]
fn soap_fixture_discover_v9_trailing_slash_reordered() {
    let body = fixture("discovery/discover-request-v9-trailing-slash-reordered.xml");
    let r = parse_discover(&body).unwrap();
    assert_eq!(
        r.message_id.as_deref(),
        Some("urn:uuid:11111111-2222-3333-4444-555555555555")
    );
    assert_eq!(r.email.as_deref(), Some("alice&bob@example.com"));
    assert_eq!(r.request_version.as_deref(), Some("9.0"));
    assert_eq!(r.os_edition.as_deref(), Some("48"));
    assert_eq!(r.application_version.as_deref(), Some("10.0.26200.1"));
    assert_eq!(r.auth_policies, ["Federated", "OnPremise", "Certificate"]);
    assert_eq!(negotiate_version(r.request_version.as_deref()), "4.0");

    let resp = DiscoverResponse {
        enrollment_version: negotiate_version(r.request_version.as_deref()).into(),
        ..sample_discover_response(r.message_id.as_deref())
    };
    golden(
        "discovery/discover-response.expected.xml",
        &write_discover_response(&resp),
    );
    let fed = DiscoverResponse {
        auth_policy: "Federated".into(),
        auth_service_url: Some("https://mdm.example.com/auth?x=1&y=2".into()),
        ..resp
    };
    golden(
        "discovery/discover-response-federated.expected.xml",
        &write_discover_response(&fed),
    );
}

#[test]
fn soap_fixture_get_policies() {
    let body = fixture("policy/get-policies-request.xml");
    let r = parse_get_policies(&body).unwrap();
    assert_eq!(
        r.credential,
        Credential::UsernameToken {
            username: "alice@example.com".into(),
            password: "p<ss w&rd".into()
        }
    );
    let out = write_get_policies_response(r.message_id.as_deref(), &PolicyConfig::default());
    golden("policy/get-policies-response.expected.xml", &out);
}

#[test]
fn soap_fixture_rst_issue() {
    let body = fixture("enroll/rst-issue-jwt-device-request.xml");
    let r = parse_rst(&body).unwrap();
    assert_eq!(r.request_type, RequestType::Issue);
    match &r.credential {
        Credential::BinarySecurityToken {
            value_type,
            encoding_type,
            token,
        } => {
            assert_eq!(value_type, "urn:ietf:params:oauth:token-type:jwt");
            assert!(encoding_type.as_deref().unwrap().ends_with("#base64binary"));
            assert_eq!(token, b"eyJhbGciOiJub25lIn0.e30.");
        }
        other => panic!("unexpected credential {other:?}"),
    }
    // openssl-generated CSR, 610 bytes DER, wrapped base64 with whitespace.
    assert_eq!(r.csr_der.len(), 610);
    assert_eq!(&r.csr_der[..4], &[0x30, 0x82, 0x02, 0x5e]);
    let c = &r.context;
    assert_eq!(c.enrollment_type(), EnrollmentType::Device);
    assert_eq!(
        CertStore::for_enrollment(c.enrollment_type()),
        CertStore::MySystem
    );
    assert_eq!(c.device_name(), Some("HL2-<lab>"));
    assert_eq!(c.macs().count(), 2);
    assert_eq!(c.bool_item("NotInOobe"), Some(true));
    assert_eq!(c.bool_item("BulkAADJ"), Some(true));

    let doc = sample_doc(CertStore::for_enrollment(c.enrollment_type()), None);
    let out = write_rstr(r.message_id.as_deref(), doc.as_bytes(), CREATED, EXPIRES);
    golden("enroll/rstr-response.expected.xml", &out);
}

#[test]
fn soap_golden_provisioning_docs() {
    golden(
        "provisioning/full-user.expected.xml",
        sample_doc(CertStore::MyUser, None).as_bytes(),
    );
    golden(
        "provisioning/device-system-renew.expected.xml",
        sample_doc(CertStore::MySystem, Some(sample_renew())).as_bytes(),
    );
}

#[test]
fn soap_golden_faults() {
    for (stem, e) in sample_faults() {
        let f = SoapFault::from(&e).with_trace_id("00000000-0000-0000-0000-000000000000");
        let out = write_fault(
            &f,
            Some("urn:uuid:0d5a1441-5891-453b-becf-a2e5f6ea3749"),
            FaultAction::Dispatcher,
        );
        golden(&format!("enroll/fault-{stem}.expected.xml"), &out);
        assert_eq!(e.http_status(), 500);
    }
    // without RelatesTo / TraceId, other action
    let f = SoapFault::from(&EnrollError::MessageFormat {
        reason: "not XML".into(),
    });
    golden(
        "enroll/fault-message-format-bare.expected.xml",
        &write_fault(&f, None, FaultAction::Rstrc),
    );
}

#[test]
fn soap_goldens_are_deterministic() {
    assert_eq!(
        sample_doc(CertStore::MyUser, None),
        sample_doc(CertStore::MyUser, None)
    );
    let a = write_get_policies_response(Some("x"), &PolicyConfig::default());
    assert_eq!(
        a,
        write_get_policies_response(Some("x"), &PolicyConfig::default())
    );
}

#[test]
fn soap_goldens_parse_with_own_reader() {
    let mut n = 0;
    for dir in ["discovery", "policy", "enroll", "provisioning"] {
        for entry in std::fs::read_dir(super::fixtures_dir().join(dir)).unwrap() {
            let p = entry.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            let root =
                winmdm::xml::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(!root.local.is_empty());
            n += 1;
        }
    }
    assert!(n >= 20, "only {n} fixture files");
}

#[test]
fn soap_fixture_rst_renew_robo() {
    let body = fixture("enroll/rst-renew-robo-request.xml");
    let r = parse_rst(&body).unwrap();
    assert_eq!(r.request_type, RequestType::Renew);
    assert_eq!(
        r.csr_value_type,
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#PKCS7"
    );
    assert_eq!(r.csr_der.len(), 610);
    assert_eq!(
        r.credential,
        Credential::UsernameToken {
            username: "1E08C6E95D8BB843B1278FF45BC60CC6".into(),
            password: String::new()
        }
    );
    let env = winmdm::soap::Envelope::parse(&body).unwrap();
    let sec = env.security.unwrap();
    assert_eq!(sec.created.as_deref(), Some("2026-01-02T03:04:05.000Z"));
    assert_eq!(sec.expires.as_deref(), Some("2026-01-02T03:09:05.000Z"));
    assert_eq!(
        r.context.device_id(),
        Some("1E08C6E95D8BB843B1278FF45BC60CC6")
    );
}
