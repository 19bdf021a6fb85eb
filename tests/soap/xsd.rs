//! XSD validation of our responses with `xmllint` (libxml2-utils), skipped with a printed
//! reason when xmllint or the shared schemas are absent.
//!
//! Which schema validates what (all from `../shared/schemas`, see its SOURCE.md):
//! * envelope, `s:Fault`: `soap12-envelope.xsd` (Header/Body/Detail contents are `lax`, so any
//!   element with a known declaration is validated too);
//! * `a:Action`/`a:RelatesTo`: `ws-addr.xsd`;
//! * `DiscoverResponse`: `MS-MDE2-discovery.xsd`;
//! * `GetPoliciesResponse`: `MS-XCEP.xsd` (strict `xs:sequence` order, nillability);
//! * RSTRC: `ws-trust-1.3.xsd` (+ `oasis-…-secext/utility-1.0.xsd` for `o:Security`,
//!   `u:Timestamp`, `BinarySecurityToken`), `MS-WSTEP.xsd` for `DispositionMessage`/`RequestID`.
//!
//! Offline resolution: the secext/utility/ws-trust/ws-policy imports use relative paths that
//! resolve inside the folder. Two imports would need the network: `soap12-envelope.xsd` imports
//! the `xml:` namespace without a location and `MS-WSTEP.xsd` imports
//! `http://www.w3.org/2001/xml.xsd`. The test therefore writes, in a temporary directory, a
//! wrapper schema that imports a minimal stand-in for the `xml:` namespace (declaring only
//! `xml:lang`) *first* — libxml2 then skips later imports of that namespace — followed by the
//! shared schemas by absolute path. xmllint runs with `--nonet`.

use std::path::Path;
use std::process::Command;

use winmdm::soap::{
    write_discover_response, write_fault, write_get_policies_response, write_rstr, CertStore,
    FaultAction, PolicyConfig, SoapFault,
};

use winmdm::soap::provisioning::{build_renewal, RenewalDoc};

use super::fixtures::{
    sample_discover_response, sample_doc, sample_faults, sample_renew, CREATED, EXPIRES,
};
use super::schemas_dir;

const XML_NS_STANDIN: &str = r#"<?xml version="1.0"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="http://www.w3.org/XML/1998/namespace">
  <xs:attribute name="lang" type="xs:language"/>
</xs:schema>
"#;

const IMPORTS: [(&str, &str); 9] = [
    (
        "http://www.w3.org/2003/05/soap-envelope",
        "soap12-envelope.xsd",
    ),
    ("http://www.w3.org/2005/08/addressing", "ws-addr.xsd"),
    (
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
        "oasis-200401-wss-wssecurity-utility-1.0.xsd",
    ),
    (
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
        "oasis-200401-wss-wssecurity-secext-1.0.xsd",
    ),
    (
        "http://docs.oasis-open.org/ws-sx/ws-trust/200512",
        "ws-trust-1.3.xsd",
    ),
    (
        "http://schemas.microsoft.com/windows/management/2012/01/enrollment",
        "MS-MDE2-discovery.xsd",
    ),
    (
        "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy",
        "MS-XCEP.xsd",
    ),
    (
        "http://schemas.microsoft.com/windows/pki/2009/01/enrollment",
        "MS-WSTEP.xsd",
    ),
    (
        "http://schemas.xmlsoap.org/ws/2004/09/policy",
        "ws-policy.xsd",
    ),
];

fn xmllint_available() -> bool {
    Command::new("xmllint")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn wrapper(dir: &Path, schemas: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("xml-ns-standin.xsd"), XML_NS_STANDIN).unwrap();
    let mut s = String::from(
        "<?xml version=\"1.0\"?>\n<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" targetNamespace=\"urn:winmdm:test:all\">\n  <xs:import namespace=\"http://www.w3.org/XML/1998/namespace\" schemaLocation=\"xml-ns-standin.xsd\"/>\n",
    );
    for (ns, file) in IMPORTS {
        let p = schemas.join(file);
        assert!(p.exists(), "schema {} missing", p.display());
        s.push_str(&format!(
            "  <xs:import namespace=\"{ns}\" schemaLocation=\"{}\"/>\n",
            p.display()
        ));
    }
    s.push_str("</xs:schema>\n");
    let path = dir.join("all.xsd");
    std::fs::write(&path, s).unwrap();
    path
}

#[test]
fn soap_xsd_validate_responses_with_xmllint() {
    if !xmllint_available() {
        println!("SKIP: xmllint not installed (apt-get install -y libxml2-utils)");
        return;
    }
    let schemas = schemas_dir();
    if !schemas.join("MS-XCEP.xsd").exists() {
        println!("SKIP: schemas not found at {}", schemas.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let xsd = wrapper(tmp.path(), &schemas);

    let mut docs: Vec<(String, Vec<u8>)> = vec![
        (
            "discover".into(),
            write_discover_response(&sample_discover_response(Some("urn:uuid:1"))),
        ),
        (
            "policies".into(),
            write_get_policies_response(Some("urn:uuid:2"), &PolicyConfig::default()),
        ),
        (
            "rstr".into(),
            write_rstr(
                Some("urn:uuid:3"),
                sample_doc(CertStore::MyUser, None).as_bytes(),
                CREATED,
                EXPIRES,
            ),
        ),
        (
            "rstr-renewal".into(),
            write_rstr(
                Some("urn:uuid:5"),
                build_renewal(&RenewalDoc {
                    client_cert_der: b"new certificate",
                    client_thumbprint: "8F2EBD13F3612D7C48C30E24CC73A88492613849",
                    cert_store: CertStore::MyUser,
                    renew: Some(sample_renew()),
                })
                .as_bytes(),
                CREATED,
                EXPIRES,
            ),
        ),
    ];
    for (stem, e) in sample_faults() {
        let f = SoapFault::from(&e).with_trace_id("t");
        docs.push((
            format!("fault-{stem}"),
            write_fault(&f, Some("urn:uuid:4"), FaultAction::Dispatcher),
        ));
    }

    let mut failures = Vec::new();
    for (name, bytes) in &docs {
        let p = tmp.path().join(format!("{name}.xml"));
        std::fs::write(&p, bytes).unwrap();
        let out = Command::new("xmllint")
            .args(["--noout", "--nonet", "--schema"])
            .arg(&xsd)
            .arg(&p)
            .output()
            .unwrap();
        if !out.status.success() {
            failures.push(format!("{name}: {}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    println!(
        "SOAP outputs valid against the XSDs: {}/{} (discover, policies, rstr, rstr-renewal, {} faults)",
        docs.len() - failures.len(),
        docs.len(),
        docs.len() - 4
    );
    assert!(
        failures.is_empty(),
        "XSD validation failed:\n{}",
        failures.join("\n")
    );
}

/// Validates one message against the shared schemas: `None` (with a printed SKIP) when xmllint
/// or the schemas are unavailable, else xmllint's verdict (its error text on failure).
pub(crate) fn validate(name: &str, bytes: &[u8]) -> Option<Result<(), String>> {
    let schemas = schemas_dir();
    if !xmllint_available() || !schemas.join("MS-WSTEP.xsd").exists() {
        println!("SKIP {name}: xmllint or ../shared/schemas unavailable");
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let xsd = wrapper(tmp.path(), &schemas);
    let p = tmp.path().join("msg.xml");
    std::fs::write(&p, bytes).unwrap();
    let out = Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(&xsd)
        .arg(&p)
        .output()
        .unwrap();
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    })
}

/// The validator must be able to fail: a policy response with two elements swapped is refused.
#[test]
fn soap_xsd_validator_rejects_wrong_order() {
    if !xmllint_available() || !schemas_dir().join("MS-XCEP.xsd").exists() {
        println!("SKIP: xmllint or schemas unavailable");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let xsd = wrapper(tmp.path(), &schemas_dir());
    let good =
        String::from_utf8(write_get_policies_response(None, &PolicyConfig::default())).unwrap();
    let bad = good.replace(
        "<commonName>WinMDM Device</commonName><policySchema>3</policySchema>",
        "<policySchema>3</policySchema><commonName>WinMDM Device</commonName>",
    );
    assert_ne!(good, bad);
    let p = tmp.path().join("bad.xml");
    std::fs::write(&p, bad).unwrap();
    let out = Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(&xsd)
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "xmllint accepted a mis-ordered GetPoliciesResponse"
    );
}
