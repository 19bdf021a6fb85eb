//! Every captured Windows discovery, policy and enrollment request in `../shared/conformance/`
//! is accepted by the real server and answered well-formed.

use std::path::{Path, PathBuf};

use crate::support::device::{element_text, Provisioning, B64};
use crate::support::{conformance_dir, TestServer};
use base64::Engine;
use x509_parser::prelude::FromDer;

pub(crate) fn captures(dir: &Path, kind: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let patterns: &[&str] = match kind {
        "discover" => &["device-discover-request", "discovery-post-request"],
        "policy" => &["getpolicies-request", "03-policy-request"],
        "enroll" => &["rst-wstep-request", "04-enroll-request"],
        _ => &[],
    };
    for sub in ["fleet", "peers/marcosd4h-mdm-poc"] {
        if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".xml") && patterns.iter().any(|p| name.contains(p)) {
                    out.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

pub(crate) async fn server_with_capture_users(files: &[PathBuf]) -> TestServer {
    let srv = TestServer::start().await;
    let mut made = std::collections::HashSet::new();
    for f in files {
        let xml = std::fs::read_to_string(f).unwrap();
        if let (Some(u), Some(p)) = (
            element_text(&xml, "Username"),
            element_text(&xml, "Password"),
        ) {
            if made.insert(u.to_lowercase()) {
                srv.create_user(&u, &p).await;
            }
        }
    }
    srv
}

#[tokio::test]
async fn captured_discovery_requests_are_answered() {
    let Some(dir) = conformance_dir("captured discovery requests") else {
        return;
    };
    let files = captures(&dir, "discover");
    assert!(files.len() >= 2, "expected captures, found {files:?}");
    let srv = TestServer::start().await;
    for f in &files {
        let body = std::fs::read(f).unwrap();
        let r = srv
            .client()
            .soap("/EnrollmentServer/Discovery.svc", &body)
            .await;
        assert_eq!(r.status, 200, "{}: {}", f.display(), r.text());
        let xml = r.text();
        roxmltree::Document::parse(&xml).expect("well-formed");
        let mid = element_text(&String::from_utf8_lossy(&body), "MessageID").unwrap();
        assert_eq!(
            element_text(&xml, "RelatesTo").as_deref(),
            Some(mid.as_str())
        );
        assert_eq!(
            element_text(&xml, "AuthPolicy").as_deref(),
            Some("OnPremise")
        );
        assert!(element_text(&xml, "EnrollmentServiceUrl")
            .unwrap()
            .starts_with("https://localhost:"));
        println!("accepted {}", f.display());
    }
    srv.stop().await;
}

#[tokio::test]
async fn captured_policy_requests_are_answered() {
    let Some(dir) = conformance_dir("captured policy requests") else {
        return;
    };
    let files = captures(&dir, "policy");
    assert!(files.len() >= 2, "expected captures, found {files:?}");
    let srv = server_with_capture_users(&files).await;
    for f in &files {
        let body = std::fs::read(f).unwrap();
        let r = srv
            .client()
            .soap("/EnrollmentServer/Policy.svc", &body)
            .await;
        assert_eq!(r.status, 200, "{}: {}", f.display(), r.text());
        let xml = r.text();
        roxmltree::Document::parse(&xml).expect("well-formed");
        assert_eq!(
            element_text(&xml, "minimalKeyLength").as_deref(),
            Some("2048")
        );
        assert_eq!(element_text(&xml, "policySchema").as_deref(), Some("3"));
        println!("accepted {}", f.display());
    }
    srv.stop().await;
}

#[tokio::test]
async fn captured_windows_enrollments_get_a_certificate() {
    let Some(dir) = conformance_dir("captured enrollment requests") else {
        return;
    };
    let files = captures(&dir, "enroll");
    assert!(files.len() >= 2, "expected captures, found {files:?}");
    for f in &files {
        // Each capture on a server of its own, as it was made: two of them enroll the same
        // DeviceID as two different users of two different servers, which one server refuses
        // (a DeviceID belongs to the principal that enrolled it, issue 13).
        let srv = server_with_capture_users(std::slice::from_ref(f)).await;
        let body = std::fs::read(f).unwrap();
        let req = String::from_utf8_lossy(&body).into_owned();
        let r = srv
            .client()
            .soap("/EnrollmentServer/Enrollment.svc", &body)
            .await;
        assert_eq!(r.status, 200, "{}: {}", f.display(), r.text());
        let b64 = element_text(&r.text(), "BinarySecurityToken").expect("token");
        let doc = String::from_utf8(B64.decode(b64.trim()).unwrap()).unwrap();
        let prov = Provisioning::parse(&doc);
        let device_id = context_item(&req, "DeviceID").expect("DeviceID in capture");
        let (_, cert) = x509_parser::parse_x509_certificate(&prov.client_cert).unwrap();
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .filter_map(|c| c.as_str().ok())
            .collect();
        assert_eq!(cn, vec![device_id.as_str()]);
        // The certificate certifies the key in the real Windows CSR.
        let csr_b64 = element_text(&req, "BinarySecurityToken").unwrap();
        let csr = B64.decode(csr_b64.trim()).unwrap();
        let (_, parsed) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&csr).unwrap();
        assert_eq!(
            cert.public_key().raw,
            parsed.certification_request_info.subject_pki.raw
        );
        let (_, dev) = srv
            .admin("GET", &format!("/api/v1/devices/{device_id}"), None)
            .await;
        assert_eq!(dev["state"], "enrolled");
        println!("accepted {} → certificate for {device_id}", f.display());
        srv.stop().await;
    }
}

pub(crate) fn context_item(xml: &str, name: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let item = doc
        .descendants()
        .find(|n| n.tag_name().name() == "ContextItem" && n.attribute("Name") == Some(name))?;
    item.descendants()
        .find(|n| n.tag_name().name() == "Value")
        .and_then(|v| v.text())
        .map(|t| t.trim().to_string())
}
