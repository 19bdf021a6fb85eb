//! What Windows is known to accept from the CA (issue 24: PrintableString CN, root and
//! intermediate) and what the generated CA may vouch for (issue 13 finding 11).

use std::sync::Arc;

use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{now, rsa_ca};
use crate::support::device::{self, DeviceInfo};
use crate::support::TestServer;
use winmdm::ca::{self, KeyAlgorithm};

/// DER of `CN=<value>` as an AttributeTypeAndValue value with string tag `tag`.
fn cn_bytes(tag: u8, value: &str) -> Vec<u8> {
    let mut v = vec![0x06, 0x03, 0x55, 0x04, 0x03, tag, value.len() as u8];
    v.extend_from_slice(value.as_bytes());
    v
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn device_certificate_cn_is_a_printable_string() {
    let id = "1E08C6E95D8BB843B1278FF45BC60CC6";
    let (csr, _) = ca::testing::device_csr(id, KeyAlgorithm::Rsa2048);
    let csr = ca::verify_csr(&csr, 2048).unwrap();
    let cert = rsa_ca()
        .issue_device_cert(&csr, id, std::time::Duration::from_secs(86_400), now())
        .unwrap();
    assert!(
        contains(&cert.der, &cn_bytes(0x13, id)),
        "CN must be PrintableString (tag 0x13)"
    );
    assert!(!contains(&cert.der, &cn_bytes(0x0c, id)));
    assert_eq!(ca::device_id_from_cert(&cert.der).unwrap().device_id, id);
    assert_eq!(
        rsa_ca()
            .authenticate_device_cert(&cert.der, now())
            .unwrap()
            .device_id,
        id
    );
    // Outside the PrintableString alphabet ('_'): UTF8String, still read back.
    let id = "dev_1";
    let (csr, _) = ca::testing::device_csr(id, KeyAlgorithm::EcdsaP256);
    let csr = ca::verify_csr(&csr, 2048).unwrap();
    let cert = rsa_ca()
        .issue_device_cert(&csr, id, std::time::Duration::from_secs(86_400), now())
        .unwrap();
    assert!(contains(&cert.der, &cn_bytes(0x0c, id)));
    assert_eq!(ca::device_id_from_cert(&cert.der).unwrap().device_id, id);
}

/// A self-signed root and an intermediate CA below it, as PEM: (root cert, int cert, int key).
fn root_and_intermediate() -> (String, String, String) {
    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "Contoso Root");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root = p.self_signed(&root_key).unwrap();
    let issuer = Issuer::from_ca_cert_der(root.der(), root_key).unwrap();
    let int_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "Contoso MDM Issuing CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let int = p.signed_by(&int_key, &issuer).unwrap();
    (root.pem(), int.pem(), int_key.serialize_pem())
}

#[tokio::test]
async fn an_intermediate_ca_without_its_root_is_refused_at_start() {
    let keys = tempfile::tempdir().unwrap();
    let (_, int, key) = root_and_intermediate();
    std::fs::write(keys.path().join("int.pem"), int).unwrap();
    std::fs::write(keys.path().join("int.key"), key).unwrap();
    let data = tempfile::tempdir().unwrap();
    let cfg = winmdm::config::ServeOptions {
        data_dir: Some(data.path().to_path_buf()),
        ca_cert: Some(keys.path().join("int.pem")),
        ca_key: Some(keys.path().join("int.key")),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let err = tokio::task::spawn_blocking(move || {
        winmdm::app::App::open_with_clock(cfg, None, Arc::new(winmdm::clock::SystemClock))
            .map(|_| ())
    })
    .await
    .unwrap()
    .expect_err("an intermediate installed as a root must not start");
    let msg = err.to_string();
    assert!(
        msg.contains("not self-signed") && msg.contains("root"),
        "clear start-up error: {msg}"
    );
}

#[tokio::test]
async fn an_intermediate_ca_with_its_root_installs_root_and_intermediate() {
    let keys = tempfile::tempdir().unwrap();
    let (root, int, key) = root_and_intermediate();
    std::fs::write(keys.path().join("bundle.pem"), format!("{int}{root}")).unwrap();
    std::fs::write(keys.path().join("int.key"), key).unwrap();
    let p = keys.path().to_path_buf();
    let srv = TestServer::start_with(move |o| {
        o.ca_cert = Some(p.join("bundle.pem"));
        o.ca_key = Some(p.join("int.key"));
    })
    .await;
    let pem_der = |pem: &str| -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents
    };
    let (root_der, int_der) = (pem_der(&root), pem_der(&int));
    srv.create_user("chain@example.com", "pw-chain-123").await;
    let e = device::enroll(
        &srv.client(),
        &DeviceInfo::new(7, "chain@example.com", "pw-chain-123"),
    )
    .await;
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(e.root_der, root_der, "Root/System holds the real root");
    let int_node = format!(
        r#"<characteristic type="CA"><characteristic type="System"><characteristic type="{}"><parm name="EncodedCertificate" value="{}"/></characteristic></characteristic></characteristic>"#,
        ca::thumbprint(&int_der),
        b64.encode(&int_der)
    );
    assert!(
        e.provisioning_doc.contains(&int_node),
        "CA/System holds the intermediate: {}",
        e.provisioning_doc
    );
    // The device certificate chains to the intermediate, and management works.
    let cert = X509Certificate::from_der(&e.cert_der).unwrap().1;
    let int_cert = X509Certificate::from_der(&int_der).unwrap().1;
    assert_eq!(cert.issuer(), int_cert.subject());
    crate::support::mdm_device::ManagedDevice::new(&srv, &e)
        .session()
        .await;
    srv.stop().await;
}

#[tokio::test]
async fn the_generated_ca_can_only_vouch_for_the_server_hosts() {
    let srv = TestServer::start().await;
    let der = srv.app.ca.cert_der().to_vec();
    let x = X509Certificate::from_der(&der).unwrap().1;
    let nc = x
        .name_constraints()
        .unwrap()
        .expect("NameConstraints on the generated CA");
    assert!(nc.critical, "NameConstraints critical");
    let permitted: Vec<String> = nc
        .value
        .permitted_subtrees
        .iter()
        .flatten()
        .map(|s| format!("{}", s.base))
        .collect();
    assert!(
        permitted.iter().any(|p| p.contains("localhost")),
        "{permitted:?}"
    );
    assert_eq!(
        nc.value.excluded_subtrees.iter().flatten().count(),
        2,
        "every IPv4 and IPv6 address excluded"
    );
    let eku = x
        .extended_key_usage()
        .unwrap()
        .expect("EKU on the CA")
        .value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(
        !eku.code_signing && !eku.email_protection && !eku.time_stamping && !eku.any,
        "{eku:?}"
    );
    assert!(eku.other.is_empty());

    // A TLS certificate for another site, signed with this CA's key, is refused by a
    // constraint-checking verifier (webpki); one for our own host is accepted.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(der.clone())).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .unwrap();
    let check = |host: &str| {
        let (pem, _) = srv
            .app
            .ca
            .issue_server_cert(&[host.to_string()], KeyAlgorithm::EcdsaP256, now())
            .unwrap();
        let leaf = CertificateDer::from(
            x509_parser::pem::parse_x509_pem(pem.as_bytes())
                .unwrap()
                .1
                .contents,
        );
        verifier.verify_server_cert(
            &leaf,
            &[],
            &ServerName::try_from(host.to_string()).unwrap(),
            &[],
            UnixTime::now(),
        )
    };
    assert!(check("localhost").is_ok(), "{:?}", check("localhost"));
    for other in [
        "login.microsoftonline.com",
        "evil.example",
        "localhost.evil.example",
    ] {
        let r = check(other);
        assert!(
            r.is_err(),
            "{other}: a TLS certificate for another host must be refused"
        );
    }
    let ip = check("10.1.2.3");
    assert!(ip.is_err(), "an IP address certificate is refused too");
    // Device identity certificates (CN=<DeviceID>, no SAN) still verify as TLS client
    // certificates under the constrained CA: every management test runs through it.
    srv.stop().await;
}
