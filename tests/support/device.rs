//! A fake Windows device: discovery → policy → enrollment over real TLS, with messages shaped like
//! the ones Windows 10/11 sends (see `../shared/conformance/`), and checks of what comes back.

use base64::Engine;
use winmdm::ca::KeyAlgorithm;

use super::{Client, HttpResponse};

pub const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub use winmdm::testkit::{discover_xml, message_id, policy_xml, rst_xml, DeviceInfo};

/// The result of a successful enrollment.
pub struct Enrolled {
    pub device_id: String,
    pub cert_der: Vec<u8>,
    pub key: rcgen::KeyPair,
    pub root_der: Vec<u8>,
    pub provisioning_doc: String,
    pub mgmt_url: String,
}

/// Text of the first element with local name `name` in `xml`.
pub fn element_text(xml: &str, name: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    doc.descendants()
        .find(|n| n.tag_name().name() == name)
        .and_then(|n| n.text().map(str::to_string))
}

/// Fault subcode text (e.g. `s:Authentication`) of a SOAP fault, if it is one.
pub fn fault_subcode(xml: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let sub = doc
        .descendants()
        .find(|n| n.tag_name().name() == "Subcode")?;
    sub.children()
        .find(|n| n.tag_name().name() == "Value")
        .and_then(|n| n.text().map(|t| t.trim().to_string()))
}

/// Steps 0–2: probe, discover, get policies. Returns (policy URL, enrollment URL).
pub async fn discover_and_policy(c: &Client, info: &DeviceInfo) -> (String, String) {
    let probe = c
        .request("GET", "/EnrollmentServer/Discovery.svc", &[], vec![])
        .await;
    assert_eq!(probe.status, 200, "discovery probe");
    let mid = message_id();
    let r = c
        .soap(
            "/EnrollmentServer/Discovery.svc",
            discover_xml(
                &info.upn,
                &info.request_version,
                &["OnPremise", "Federated"],
                &mid,
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "discover: {}", r.text());
    let body = r.text();
    assert_eq!(
        element_text(&body, "RelatesTo").as_deref(),
        Some(mid.as_str())
    );
    assert_eq!(
        element_text(&body, "AuthPolicy").as_deref(),
        Some("OnPremise")
    );
    let policy_url = element_text(&body, "EnrollmentPolicyServiceUrl").expect("policy url");
    let enroll_url = element_text(&body, "EnrollmentServiceUrl").expect("enrollment url");
    let mid = message_id();
    let r = c
        .soap(
            &policy_url,
            policy_xml(&info.upn, &info.password, &policy_url, &mid).as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "policy: {}", r.text());
    assert_eq!(
        element_text(&r.text(), "minimalKeyLength").as_deref(),
        Some("2048")
    );
    (policy_url, enroll_url)
}

/// Sends an RST with this CSR; returns the raw response.
pub async fn send_rst(
    c: &Client,
    enroll_url: &str,
    info: &DeviceInfo,
    csr_der: &[u8],
) -> HttpResponse {
    c.soap(
        enroll_url,
        rst_xml(info, csr_der, enroll_url, &message_id()).as_bytes(),
    )
    .await
}

/// The whole enrollment; panics (with the server's answer) if any step fails.
pub async fn enroll(c: &Client, info: &DeviceInfo) -> Enrolled {
    let (_, enroll_url) = discover_and_policy(c, info).await;
    let (csr, key) = winmdm::ca::testing::device_csr(&info.device_id, KeyAlgorithm::Rsa2048);
    let r = send_rst(c, &enroll_url, info, &csr).await;
    assert_eq!(r.status, 200, "enroll: {}", r.text());
    assert!(
        r.headers.get("content-length").is_some(),
        "RSTRC without Content-Length"
    );
    assert!(
        r.headers.get("transfer-encoding").is_none(),
        "RSTRC must not be chunked"
    );
    let b64 = element_text(&r.text(), "BinarySecurityToken").expect("provisioning token");
    let doc = String::from_utf8(B64.decode(b64.trim()).expect("base64")).expect("utf-8 doc");
    let prov = Provisioning::parse(&doc);
    Enrolled {
        device_id: info.device_id.clone(),
        cert_der: prov.client_cert.clone(),
        key,
        root_der: prov.root_cert.clone(),
        mgmt_url: prov.addr.clone(),
        provisioning_doc: doc,
    }
}

/// What a device reads from the wap-provisioningdoc.
#[derive(Debug)]
pub struct Provisioning {
    pub root_thumbprint: String,
    pub root_cert: Vec<u8>,
    pub client_store: String,
    pub client_thumbprint: String,
    pub client_cert: Vec<u8>,
    pub addr: String,
    pub parms: Vec<(String, String)>,
}

fn ty(n: roxmltree::Node) -> String {
    n.attribute("type").unwrap_or("").to_string()
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, t: &str) -> roxmltree::Node<'a, 'i> {
    n.children()
        .find(|c| c.has_tag_name("characteristic") && ty(*c) == t)
        .unwrap_or_else(|| panic!("characteristic {t}"))
}

fn first_char<'a, 'i>(n: roxmltree::Node<'a, 'i>) -> roxmltree::Node<'a, 'i> {
    n.children()
        .find(|c| c.has_tag_name("characteristic") && ty(*c) != "PrivateKeyContainer")
        .expect("thumbprint characteristic")
}

fn cert_of(n: roxmltree::Node) -> Vec<u8> {
    let v = n
        .children()
        .find(|p| p.has_tag_name("parm") && p.attribute("name") == Some("EncodedCertificate"))
        .and_then(|p| p.attribute("value"))
        .expect("EncodedCertificate");
    B64.decode(v).expect("cert base64")
}

impl Provisioning {
    pub fn parse(doc: &str) -> Provisioning {
        let x = roxmltree::Document::parse(doc).expect("provisioning doc is well-formed XML");
        let store = x
            .descendants()
            .find(|n| n.has_tag_name("characteristic") && ty(*n) == "CertificateStore")
            .expect("CertificateStore");
        let root = first_char(child(child(store, "Root"), "System"));
        let my = child(store, "My");
        let (store_name, my_scope) = match my
            .children()
            .find(|c| c.has_tag_name("characteristic") && (ty(*c) == "User" || ty(*c) == "System"))
        {
            Some(s) => (ty(s), s),
            None => panic!("My/User or My/System"),
        };
        assert!(
            my_scope.children().any(|c| ty(c) == "PrivateKeyContainer"),
            "PrivateKeyContainer missing"
        );
        let client = first_char(my_scope);
        let parms: Vec<(String, String)> = x
            .descendants()
            .filter(|n| n.has_tag_name("parm"))
            .map(|n| {
                (
                    n.attribute("name").unwrap_or("").to_string(),
                    n.attribute("value").unwrap_or("").to_string(),
                )
            })
            .collect();
        let addr = parms
            .iter()
            .find(|(k, _)| k == "ADDR")
            .map(|(_, v)| v.clone())
            .expect("w7 ADDR");
        Provisioning {
            root_thumbprint: ty(root),
            root_cert: cert_of(root),
            client_store: store_name,
            client_thumbprint: ty(client),
            client_cert: cert_of(client),
            addr,
            parms,
        }
    }

    pub fn parm(&self, name: &str) -> Option<&str> {
        self.parms
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The fault a device sees, without its per-request trace id.
pub fn fault_without_trace(body: &str) -> String {
    let mut out = body.to_string();
    for tag in ["TraceId", "traceid"] {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        while let (Some(a), Some(b)) = (out.find(&open), out.find(&close)) {
            if b < a {
                break;
            }
            out.replace_range(a..b + close.len(), "");
        }
    }
    // The relatesTo / MessageID echo differs per request too.
    out.split("<a:RelatesTo")
        .next()
        .map(str::to_string)
        .unwrap_or(out)
        .lines()
        .filter(|l| !l.contains("MessageID") && !l.contains("RelatesTo"))
        .collect()
}
