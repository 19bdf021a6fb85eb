//! Both directions: device-side builders (`soap::client`) → our parsers give the same values;
//! our writers → device-side parsers give the same values (hickory-style `(value, xml)` checks).

use winmdm::soap::client::{
    discover_request, get_policies_request, parse_discover_response, parse_rstr, rst_issue_request,
    Reply,
};
use winmdm::soap::{
    parse_discover, parse_get_policies, parse_rst, write_discover_response, write_fault,
    write_rstr, AdditionalContext, CertStore, Credential, EnrollError, FaultAction, RequestType,
    SoapFault,
};

use super::fixtures::{sample_discover_response, sample_doc, CREATED, EXPIRES};

fn creds() -> Vec<Credential> {
    vec![
        Credential::UsernameToken { username: "a&b@example.com".into(), password: "<p\"w'>".into() },
        Credential::UsernameToken { username: "robo".into(), password: String::new() },
        Credential::BinarySecurityToken {
            value_type: "urn:ietf:params:oauth:token-type:jwt".into(),
            encoding_type: Some(
                "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#base64binary".into(),
            ),
            token: b"eyJ0eXAiOiJKV1QifQ.e30.sig".to_vec(),
        },
    ]
}

#[test]
fn soap_roundtrip_discover() {
    for version in ["1.0", "4.0", "9.0"] {
        let req = discover_request(
            "urn:uuid:x",
            "https://h/EnrollmentServer/Discovery.svc",
            "u@h.example",
            version,
            &["OnPremise", "Federated"],
        );
        let r = parse_discover(&req).unwrap();
        assert_eq!(r.request_version.as_deref(), Some(version));
        assert_eq!(r.email.as_deref(), Some("u@h.example"));
        assert_eq!(r.auth_policies, ["OnPremise", "Federated"]);
        assert_eq!(r.message_id.as_deref(), Some("urn:uuid:x"));
    }
    let resp = sample_discover_response(Some("urn:uuid:x"));
    assert_eq!(
        parse_discover_response(&write_discover_response(&resp)).unwrap(),
        Reply::Ok(resp)
    );
}

#[test]
fn soap_roundtrip_policy_credentials() {
    for c in creds() {
        let req = get_policies_request("urn:uuid:p", "https://h/Policy.svc", &c);
        assert_eq!(parse_get_policies(&req).unwrap().credential, c);
    }
}

#[test]
fn soap_roundtrip_rst_and_rstr() {
    let ctx = AdditionalContext {
        items: vec![
            ("DeviceID".into(), "ABC".into()),
            ("MAC".into(), "1".into()),
            ("MAC".into(), "1".into()),
            ("DeviceName".into(), "a<b>&c".into()),
        ],
    };
    let csr = vec![0x30, 0x03, 0x02, 0x01, 0x00];
    for c in creds() {
        let req = rst_issue_request("urn:uuid:r", "https://h/Enrollment.svc", &c, &csr, &ctx);
        let r = parse_rst(&req).unwrap();
        assert_eq!(r.credential, c);
        assert_eq!(r.request_type, RequestType::Issue);
        assert_eq!(r.csr_der, csr);
        assert_eq!(r.context, ctx);
    }
    let doc = sample_doc(CertStore::MyUser, None);
    let rstr = write_rstr(Some("urn:uuid:r"), doc.as_bytes(), CREATED, EXPIRES);
    assert_eq!(parse_rstr(&rstr).unwrap(), Reply::Ok(doc.into_bytes()));
}

#[test]
fn soap_roundtrip_fault_as_device_sees_it() {
    let e = EnrollError::NotEligibleToRenew {
        reason: "expired".into(),
    };
    let x = write_fault(
        &SoapFault::from(&e),
        Some("urn:uuid:r"),
        FaultAction::Dispatcher,
    );
    match parse_rstr(&x).unwrap() {
        Reply::Fault(f) => {
            assert_eq!(f.subcode, "s:Authorization");
            assert_eq!(f.errortype.as_deref(), Some("NotEligibleToRenew"));
            assert_eq!(f.reason, "expired");
        }
        other => panic!("{other:?}"),
    }
}
