//! Our responses are well-formed (roxmltree) and contain every element path of the responses
//! Windows accepted in the captures, with the values a device reads.

use std::collections::BTreeSet;

use base64::Engine as _;
use winmdm::soap::{
    write_discover_response, write_fault, write_get_policies_response, write_rstr, CertStore,
    EnrollError, FaultAction, PolicyConfig, SoapFault,
};

use super::fixtures::{
    sample_discover_response, sample_doc, CLIENT_DER, CREATED, EXPIRES, ROOT_DER,
};
use super::{capture, element_paths, text_of};

const S: &str = "http://www.w3.org/2003/05/soap-envelope";
const A: &str = "http://www.w3.org/2005/08/addressing";
const XCEP: &str = "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy";
const WST: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512";
const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";

/// Paths of `captured` missing from `ours`, ignoring paths containing any of `optional`.
fn missing(captured: &str, ours: &str, optional: &[&str]) -> Vec<String> {
    let ours = element_paths(ours);
    element_paths(captured)
        .into_iter()
        .filter(|p| !optional.iter().any(|o| p.contains(o)))
        .filter(|p| !ours.contains(p))
        .collect()
}

fn utf8(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[test]
fn soap_structure_discover_response_matches_capture() {
    let ours = write_discover_response(&sample_discover_response(Some("urn:uuid:1")));
    let ours = utf8(&ours);
    for file in [
        "peers/marcosd4h-mdm-poc/02-discovery-post-response.xml",
        "fleet/trace-ngrok-02-pocserver-discover-response.xml",
    ] {
        let Some(cap) = capture(file) else { return };
        // ActivityId is optional diagnostics (PROTOCOL §2).
        let gaps = missing(utf8(&cap), ours, &["ActivityId"]);
        assert!(gaps.is_empty(), "{file}: {gaps:?}");
    }
    assert_eq!(
        text_of(ours, A, "Action").as_deref(),
        Some("http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/DiscoverResponse")
    );
    assert_eq!(text_of(ours, A, "RelatesTo").as_deref(), Some("urn:uuid:1"));
    let ns = "http://schemas.microsoft.com/windows/management/2012/01/enrollment";
    assert_eq!(
        text_of(ours, ns, "EnrollmentVersion").as_deref(),
        Some("4.0")
    );
    assert_eq!(
        text_of(ours, ns, "AuthPolicy").as_deref(),
        Some("OnPremise")
    );
}

#[test]
fn soap_structure_policy_response_matches_capture_and_xsd_order() {
    let Some(cap) = capture("peers/marcosd4h-mdm-poc/03-policy-response.xml") else {
        return;
    };
    let ours = write_get_policies_response(Some("urn:uuid:2"), &PolicyConfig::default());
    let ours = utf8(&ours);
    assert_eq!(missing(utf8(&cap), ours, &[]), Vec::<String>::new());

    let doc = roxmltree::Document::parse(ours).unwrap();
    let find = |local: &str| {
        doc.descendants()
            .find(|n| n.tag_name().name() == local && n.tag_name().namespace() == Some(XCEP))
            .unwrap_or_else(|| panic!("{local} missing"))
    };
    let names = |n: roxmltree::Node| -> Vec<String> {
        n.children()
            .filter(|c| c.is_element())
            .map(|c| c.tag_name().name().to_string())
            .collect()
    };
    // MS-XCEP.xsd xs:sequence orders.
    assert_eq!(
        names(find("GetPoliciesResponse")),
        ["response", "cAs", "oIDs"]
    );
    assert_eq!(
        names(find("response")),
        [
            "policyID",
            "policyFriendlyName",
            "nextUpdateHours",
            "policiesNotChanged",
            "policies"
        ]
    );
    assert_eq!(
        names(find("policy")),
        ["policyOIDReference", "cAs", "attributes"]
    );
    assert_eq!(
        names(find("attributes")),
        [
            "commonName",
            "policySchema",
            "certificateValidity",
            "permission",
            "privateKeyAttributes",
            "revision",
            "supersededPolicies",
            "privateKeyFlags",
            "subjectNameFlags",
            "enrollmentFlags",
            "generalFlags",
            "hashAlgorithmOIDReference",
            "rARequirements",
            "keyArchivalAttributes",
            "extensions"
        ]
    );
    assert_eq!(
        names(find("privateKeyAttributes")),
        [
            "minimalKeyLength",
            "keySpec",
            "keyUsageProperty",
            "permissions",
            "algorithmOIDReference",
            "cryptoProviders"
        ]
    );
    // What Windows reads.
    assert_eq!(find("policySchema").text(), Some("3"));
    assert_eq!(find("minimalKeyLength").text(), Some("2048"));
    let providers: Vec<_> = find("cryptoProviders")
        .children()
        .filter_map(|c| c.text())
        .collect();
    assert!(providers.contains(&"Microsoft Platform Crypto Provider"));
    assert!(providers.contains(&"Microsoft Software Key Storage Provider"));
    let hash_ref = find("hashAlgorithmOIDReference").text().unwrap();
    let oid = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "oID")
        .find(|o| {
            o.children()
                .any(|c| c.tag_name().name() == "oIDReferenceID" && c.text() == Some(hash_ref))
        })
        .expect("hashAlgorithmOIDReference resolves to an oID");
    let field = |n: &str| {
        oid.children()
            .find(|c| c.tag_name().name() == n)
            .and_then(|c| c.text())
    };
    assert_eq!(field("value"), Some("2.16.840.1.101.3.4.2.1"));
    assert_eq!(field("group"), Some("1"));
    // policyOIDReference resolves too, and reference ids are unique.
    let ids: Vec<_> = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "oIDReferenceID")
        .filter_map(|n| n.text())
        .collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len());
    assert!(ids.contains(&find("policyOIDReference").text().unwrap()));
}

#[test]
fn soap_structure_rstr_matches_capture() {
    let doc = sample_doc(CertStore::MyUser, None);
    let ours = write_rstr(Some("urn:uuid:3"), doc.as_bytes(), CREATED, EXPIRES);
    let ours = utf8(&ours);
    for file in [
        "peers/marcosd4h-mdm-poc/04-enroll-response.xml",
        "fleet/trace-ngrok-06-pocserver-rstrc-response.xml",
        "fleet/trace-readme-06-pocserver-rstrc-response.xml",
    ] {
        let Some(cap) = capture(file) else { return };
        let gaps = missing(utf8(&cap), ours, &[]);
        assert!(gaps.is_empty(), "{file}: {gaps:?}");
    }
    let b64 = text_of(ours, WSSE, "BinarySecurityToken").unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(decoded, doc.as_bytes());
    assert_eq!(
        text_of(ours, WST, "TokenType").as_deref(),
        Some("http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentToken")
    );
    assert_eq!(
        text_of(
            ours,
            "http://schemas.microsoft.com/windows/pki/2009/01/enrollment",
            "RequestID"
        )
        .as_deref(),
        Some("0")
    );
    let x = roxmltree::Document::parse(ours).unwrap();
    let bst = x
        .descendants()
        .find(|n| n.tag_name().name() == "BinarySecurityToken")
        .unwrap();
    assert_eq!(
        bst.attribute("ValueType"),
        Some("http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentProvisionDoc")
    );
    assert_eq!(text_of(ours, A, "RelatesTo").as_deref(), Some("urn:uuid:3"));
}

/// `characteristic`/`parm` paths of a provisioning doc, thumbprints and provider id normalised.
fn prov_paths(xml: &str, provider: &str) -> BTreeSet<String> {
    let doc = roxmltree::Document::parse(xml).expect("well-formed provisioning doc");
    let mut out = BTreeSet::new();
    fn norm(t: &str, provider: &str) -> String {
        if t.len() == 40
            && t.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
        {
            "{SHA1}".into()
        } else if t == provider {
            "{PROVIDER}".into()
        } else {
            t.into()
        }
    }
    fn walk(n: roxmltree::Node, prefix: &str, provider: &str, out: &mut BTreeSet<String>) {
        for c in n.children().filter(|c| c.is_element()) {
            match c.tag_name().name() {
                "characteristic" => {
                    let p = format!(
                        "{prefix}/{}",
                        norm(c.attribute("type").unwrap_or("?"), provider)
                    );
                    out.insert(p.clone());
                    walk(c, &p, provider, out);
                }
                "parm" => {
                    out.insert(format!("{prefix}@{}", c.attribute("name").unwrap_or("?")));
                }
                other => panic!("unexpected element {other}"),
            }
        }
    }
    walk(doc.root_element(), "", provider, &mut out);
    out
}

#[test]
fn soap_structure_provisioning_doc_matches_capture() {
    for file in [
        "fleet/trace-ngrok-06b-pocserver-wap-provisioningdoc-decoded.xml",
        "fleet/trace-readme-06b-pocserver-wap-provisioningdoc-decoded.xml",
    ] {
        let Some(cap) = capture(file) else { return };
        let ours = sample_doc(CertStore::MyUser, None);
        let theirs = prov_paths(utf8(&cap), "DEMO MDM");
        let mine = prov_paths(&ours, "WinMDM");
        // ServerList and ROLE are optional w7 parms we do not send (PROTOCOL §4 w7 notes).
        let missing: Vec<_> = theirs
            .iter()
            .filter(|p| !p.ends_with("@ServerList") && !p.ends_with("@ROLE"))
            .filter(|p| !mine.contains(*p))
            .collect();
        assert!(missing.is_empty(), "{file}: missing {missing:?}");
    }
}

#[test]
fn soap_structure_provisioning_doc_values() {
    let doc = sample_doc(CertStore::MyUser, None);
    let x = roxmltree::Document::parse(&doc).unwrap();
    assert_eq!(x.root_element().tag_name().name(), "wap-provisioningdoc");
    assert_eq!(x.root_element().attribute("version"), Some("1.1"));
    let parm = |name: &str| {
        x.descendants()
            .find(|n| n.tag_name().name() == "parm" && n.attribute("name") == Some(name))
            .and_then(|n| n.attribute("value"))
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let certs: Vec<_> = x
        .descendants()
        .filter(|n| n.attribute("name") == Some("EncodedCertificate"))
        .map(|n| b64.decode(n.attribute("value").unwrap()).unwrap())
        .collect();
    assert_eq!(certs, [ROOT_DER.to_vec(), CLIENT_DER.to_vec()]);
    assert_eq!(parm("APPID"), Some("w7"));
    assert_eq!(parm("PROVIDER-ID"), Some("WinMDM"));
    assert_eq!(parm("NAME"), Some("WinMDM \"Lab\" & <Test>"));
    assert_eq!(
        parm("ADDR"),
        Some("https://mdm.example.com/ManagementServer/MDM.svc")
    );
    assert_eq!(
        parm("DEFAULTENCODING"),
        Some("application/vnd.syncml.dm+xml")
    );
    assert_eq!(
        parm("SSLCLIENTCERTSEARCHCRITERIA"),
        Some("Subject=CN%3D1E08C6E95D8BB843B1278FF45BC60CC6&Stores=My%5CUser")
    );
    assert!(doc.contains("Subject=CN%3D1E08C6E95D8BB843B1278FF45BC60CC6&amp;Stores=My%5CUser"));
    assert_eq!(parm("EntDMID"), Some("1E08C6E95D8BB843B1278FF45BC60CC6"));
    assert_eq!(parm("UPN"), Some("demo@example.com"));
    assert_eq!(parm("IntervalForRemainingScheduledRetries"), Some("1440"));
    let paths = prov_paths(&doc, "WinMDM");
    for p in [
        "/CertificateStore/Root/System/{SHA1}@EncodedCertificate",
        "/CertificateStore/My/User/{SHA1}@EncodedCertificate",
        "/CertificateStore/My/User/PrivateKeyContainer",
        "/APPLICATION/APPAUTH@AAUTHLEVEL",
        "/APPLICATION@BACKCOMPATRETRYDISABLED",
        "/DMClient/Provider/{PROVIDER}/Poll@PollOnLogin",
        "/DMClient/Provider/{PROVIDER}@EntDeviceName",
    ] {
        assert!(paths.contains(p), "{p} missing from {paths:#?}");
    }
    assert!(
        !paths.iter().any(|p| p.contains("WSTEP")),
        "no renew block unless asked"
    );
    let levels: Vec<_> = x
        .descendants()
        .filter(|n| n.attribute("name") == Some("AAUTHLEVEL"))
        .map(|n| n.attribute("value").unwrap())
        .collect();
    assert_eq!(levels, ["CLIENT", "APPSRV"]);

    let dev = sample_doc(CertStore::MySystem, Some(super::fixtures::sample_renew()));
    let paths = prov_paths(&dev, "WinMDM");
    assert!(paths.contains("/CertificateStore/My/System/{SHA1}@EncodedCertificate"));
    assert!(paths.contains("/CertificateStore/My/System/PrivateKeyContainer"));
    assert!(paths.contains("/CertificateStore/My/WSTEP/Renew@RenewPeriod"));
    assert!(paths.contains("/CertificateStore/My/WSTEP/Renew@ROBOSupport"));
    assert!(!paths.iter().any(|p| p.contains("/My/User")));
    assert!(dev.contains("Stores=My%5CSystem"));
}

#[test]
fn soap_structure_fault_shape() {
    let e = EnrollError::DeviceNotSupported {
        reason: "no".into(),
    };
    let f = SoapFault::from(&e).with_trace_id("t-1");
    let x = write_fault(&f, Some("urn:uuid:4"), FaultAction::Dispatcher);
    let x = utf8(&x);
    let paths = element_paths(x);
    let e_ns = "{http://schemas.microsoft.com/windows/pki/2009/01/enrollment}";
    let base = format!("/{{{S}}}Envelope/{{{S}}}Body/{{{S}}}Fault");
    for p in [
        format!("{base}/{{{S}}}Code/{{{S}}}Value"),
        format!("{base}/{{{S}}}Code/{{{S}}}Subcode/{{{S}}}Value"),
        format!("{base}/{{{S}}}Reason/{{{S}}}Text"),
        format!("{base}/{{{S}}}Detail/{e_ns}DeviceEnrollmentServiceError/{e_ns}ErrorType"),
        format!("{base}/{{{S}}}Detail/{e_ns}DeviceEnrollmentServiceError/{e_ns}TraceId"),
    ] {
        assert!(paths.contains(&p), "{p}");
    }
    let doc = roxmltree::Document::parse(x).unwrap();
    let values: Vec<_> = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "Value" && n.tag_name().namespace() == Some(S))
        .map(|n| {
            // resolve the QName prefix in the value: Windows maps the subcode by QName
            let t = n.text().unwrap();
            let (p, l) = t.split_once(':').unwrap();
            (
                n.lookup_namespace_uri(Some(p)).unwrap().to_string(),
                l.to_string(),
            )
        })
        .collect();
    assert_eq!(
        values,
        [
            (S.to_string(), "Receiver".to_string()),
            (S.to_string(), "Authorization".to_string())
        ]
    );
    let inv = write_fault(
        &SoapFault::from(&EnrollError::InvalidSecurity { reason: "x".into() }),
        None,
        FaultAction::Dispatcher,
    );
    let inv = utf8(&inv);
    let doc = roxmltree::Document::parse(inv).unwrap();
    let sub = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "Value")
        .nth(1)
        .unwrap();
    assert_eq!(sub.text(), Some("a:InvalidSecurity"));
    assert_eq!(sub.lookup_namespace_uri(Some("a")), Some(A));
    assert_eq!(text_of(inv, S, "Text").as_deref(), Some("x"));
}
