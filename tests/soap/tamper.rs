//! Tamper tests: alter one thing in a good request, expect one specific error.

use winmdm::soap::{
    parse_discover, parse_get_policies, parse_rst, write_fault, EnrollError, FaultAction, SoapFault,
};
use winmdm::xml::MAX_INPUT_BYTES;

use super::{fixture, text_of};

fn rst() -> String {
    String::from_utf8(fixture("enroll/rst-issue-jwt-device-request.xml")).unwrap()
}
fn policy() -> String {
    String::from_utf8(fixture("policy/get-policies-request.xml")).unwrap()
}
fn discover() -> String {
    String::from_utf8(fixture(
        "discovery/discover-request-v9-trailing-slash-reordered.xml",
    ))
    .unwrap()
}

/// Replace the first `from` (must exist) by `to`.
fn edit(s: &str, from: &str, to: &str) -> Vec<u8> {
    assert!(s.contains(from), "tamper anchor {from:?} not found");
    s.replacen(from, to, 1).into_bytes()
}

/// Remove the element starting at `open` up to and including `close`.
fn cut(s: &str, open: &str, close: &str) -> Vec<u8> {
    let a = s.find(open).expect("open anchor");
    let b = a + s[a..].find(close).expect("close anchor") + close.len();
    format!("{}{}", &s[..a], &s[b..]).into_bytes()
}

fn assert_format(r: Result<impl std::fmt::Debug, EnrollError>, needle: &str) {
    match r {
        Err(EnrollError::MessageFormat { reason }) => {
            assert!(
                reason.contains(needle),
                "reason {reason:?} lacks {needle:?}"
            )
        }
        other => panic!("expected MessageFormat({needle}), got {other:?}"),
    }
}

#[test]
fn soap_tamper_missing_security_is_invalid_security() {
    let p = cut(&policy(), "<wsse:Security", "</wsse:Security>");
    assert!(matches!(
        parse_get_policies(&p),
        Err(EnrollError::InvalidSecurity { .. })
    ));
    let r = cut(&rst(), "<wsse:Security", "</wsse:Security>");
    assert!(matches!(
        parse_rst(&r),
        Err(EnrollError::InvalidSecurity { .. })
    ));
}

#[test]
fn soap_tamper_credential_base64_garbage_is_invalid_security() {
    let r = edit(&rst(), "ZXlKaGJHY2lPaUp1YjI1bEluMC5lMzAu", "!!not base64!!");
    assert!(matches!(
        parse_rst(&r),
        Err(EnrollError::InvalidSecurity { .. })
    ));
}

#[test]
fn soap_tamper_password_digest_is_invalid_security() {
    let p = edit(&policy(), "#PasswordText", "#PasswordDigest");
    assert!(matches!(
        parse_get_policies(&p),
        Err(EnrollError::InvalidSecurity { .. })
    ));
}

#[test]
fn soap_tamper_csr_base64_garbage_is_certificate_request() {
    let s = rst();
    let r = edit(&s, "MIIC", "M*IC");
    assert!(matches!(
        parse_rst(&r),
        Err(EnrollError::CertificateRequest { .. })
    ));
    let empty = edit(
        &s,
        "#PKCS10\" EncodingType",
        "#PKCS10\" Foo=\"x\" EncodingType",
    );
    assert!(parse_rst(&empty).is_ok());
    let a = s.find("#base64binary\">\n").unwrap() + "#base64binary\">".len();
    let b = a + s[a..].find("</wsse:BinarySecurityToken>").unwrap();
    let emptied = format!("{}{}", &s[..a], &s[b..]);
    assert!(matches!(
        parse_rst(emptied.as_bytes()),
        Err(EnrollError::CertificateRequest { .. })
    ));
}

#[test]
fn soap_tamper_missing_elements_named() {
    let s = rst();
    assert_format(
        parse_rst(&cut(&s, "<wst:RequestType>", "</wst:RequestType>")),
        "RequestType",
    );
    let a = s
        .find("<wsse:BinarySecurityToken ValueType=\"http://schemas.microsoft.com/windows/pki")
        .unwrap();
    let b = a
        + s[a..].find("</wsse:BinarySecurityToken>").unwrap()
        + "</wsse:BinarySecurityToken>".len();
    let no_csr = format!("{}{}", &s[..a], &s[b..]);
    assert_format(parse_rst(no_csr.as_bytes()), "BinarySecurityToken");
    assert_format(
        parse_discover(&cut(&discover(), "<d:request", "</d:request>")),
        "request",
    );
    assert_format(parse_rst(&cut(&s, "<s:Body>", "</s:Body>")), "Body");
}

#[test]
fn soap_tamper_unknown_request_type_is_not_supported() {
    let r = edit(&rst(), "200512/Issue", "200512/Validate");
    assert!(matches!(
        parse_rst(&r),
        Err(EnrollError::NotSupported { .. })
    ));
    let renew = edit(&rst(), "200512/Issue", "200512/Renew");
    assert_eq!(
        parse_rst(&renew).unwrap().request_type,
        winmdm::soap::RequestType::Renew
    );
}

#[test]
fn soap_tamper_soap11_is_message_format() {
    let d = discover().replace(
        "http://www.w3.org/2003/05/soap-envelope",
        "http://schemas.xmlsoap.org/soap/envelope/",
    );
    assert_format(parse_discover(d.as_bytes()), "SOAP 1.1");
}

#[test]
fn soap_tamper_doctype_and_entities_rejected() {
    let s = policy();
    let with_dtd = edit(
        &s,
        "<s:Envelope",
        "<!DOCTYPE s:Envelope [<!ENTITY x \"boom\">]><s:Envelope",
    );
    assert_format(parse_get_policies(&with_dtd), "DOCTYPE");
    let xxe = edit(
        &s,
        "<s:Envelope",
        "<!DOCTYPE s [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><s:Envelope",
    );
    assert!(matches!(
        parse_get_policies(&xxe),
        Err(EnrollError::MessageFormat { .. })
    ));
    let undeclared = edit(&s, "alice@example.com", "&x;");
    assert_format(parse_get_policies(&undeclared), "entity");
}

#[test]
fn soap_tamper_size_and_encoding() {
    let mut big = policy().into_bytes();
    let pad = format!("<!--{}-->", "x".repeat(MAX_INPUT_BYTES));
    big.extend_from_slice(pad.as_bytes());
    assert_format(parse_get_policies(&big), "too large");
    let bad_utf8 = edit(&policy(), "alice", "al\u{7f}ce");
    let mut bad_utf8 = bad_utf8;
    let i = bad_utf8.iter().position(|&b| b == 0x7f).unwrap();
    bad_utf8[i] = 0xC3; // lone lead byte
    assert_format(parse_get_policies(&bad_utf8), "UTF-8");
}

#[test]
fn soap_tamper_wrong_body_is_message_format() {
    assert_format(
        parse_discover(&fixture("policy/get-policies-request.xml")),
        "Discover",
    );
    assert_format(
        parse_rst(&fixture("policy/get-policies-request.xml")),
        "RequestSecurityToken",
    );
    assert_format(
        parse_get_policies(&fixture("enroll/rst-issue-jwt-device-request.xml")),
        "GetPolicies",
    );
    // a Discover in a foreign namespace
    let d = discover().replace("2012/01/enrollment/\"", "2012/02/enrollment\"");
    assert_format(parse_discover(d.as_bytes()), "Discover");
}

#[test]
fn soap_tamper_fault_reason_escaped() {
    let e = EnrollError::Authorization {
        reason: "<b>&\"'".into(),
    };
    let x = String::from_utf8(write_fault(
        &SoapFault::from(&e),
        Some("a<b"),
        FaultAction::Dispatcher,
    ))
    .unwrap();
    assert_eq!(
        text_of(&x, "http://www.w3.org/2003/05/soap-envelope", "Text").as_deref(),
        Some("<b>&\"'")
    );
    assert_eq!(
        text_of(&x, "http://www.w3.org/2005/08/addressing", "RelatesTo").as_deref(),
        Some("a<b")
    );
}

#[test]
fn soap_tamper_fault_still_relates_to_request() {
    // The credential is gone, so parse_get_policies fails, but the fault can echo MessageID.
    let p = cut(&policy(), "<wsse:Security", "</wsse:Security>");
    assert!(parse_get_policies(&p).is_err());
    assert_eq!(
        winmdm::soap::peek_message_id(&p).as_deref(),
        Some("urn:uuid:aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
    );
    assert_eq!(winmdm::soap::peek_message_id(b"<not-soap/>"), None);
    let d = parse_discover(&fixture(
        "discovery/discover-request-v9-trailing-slash-reordered.xml",
    ))
    .unwrap();
    assert!(d.offers("onpremise") && d.offers("Certificate") && !d.offers("Kerberos"));
}
