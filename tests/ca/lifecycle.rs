//! Generating, persisting and reloading the CA.

use std::time::Duration;

use winmdm::ca::{testing, verify_csr, Ca, CaError, KeyAlgorithm};
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{ec_ca, now, rsa_ca};

fn check_ca_cert(ca: &Ca, cn: &str) {
    let (rest, x) = X509Certificate::from_der(ca.cert_der()).unwrap();
    assert!(rest.is_empty());
    x.verify_signature(None).unwrap();
    assert_eq!(x.subject().as_raw(), x.issuer().as_raw(), "self-signed");
    assert_eq!(x.subject().to_string(), format!("CN={cn}, O=winmdm"));
    assert_eq!(x.raw_serial().len(), 16);
    let bc = x.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    let ku = x.key_usage().unwrap().unwrap();
    assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
    assert!(!ku.value.digital_signature() && !ku.value.key_encipherment());
    assert!(x.extensions().iter().any(|e| matches!(
        e.parsed_extension(),
        ParsedExtension::SubjectKeyIdentifier(_)
    )));
    let v = x.validity();
    let days = (v.not_after.to_datetime() - v.not_before.to_datetime()).whole_days();
    assert!((3652..=3653).contains(&days), "{days}");
    assert!(v.not_before.to_datetime() <= now());
    assert_eq!(ca.thumbprint().len(), 40);
    assert_eq!(ca.thumbprint(), winmdm::ca::thumbprint(ca.cert_der()));
}

#[test]
fn ca_generate_rsa_and_ec() {
    check_ca_cert(rsa_ca(), "winmdm test CA");
    check_ca_cert(ec_ca(), "winmdm test EC CA");
    let (_, x) = X509Certificate::from_der(rsa_ca().cert_der()).unwrap();
    assert_eq!(
        x.signature_algorithm.algorithm.to_id_string(),
        "1.2.840.113549.1.1.11"
    );
    assert_eq!(x.public_key().parsed().unwrap().key_size(), 2048);
    let (_, x) = X509Certificate::from_der(ec_ca().cert_der()).unwrap();
    assert_eq!(
        x.signature_algorithm.algorithm.to_id_string(),
        "1.2.840.10045.4.3.2"
    );
    assert!(matches!(
        Ca::generate(KeyAlgorithm::EcdsaP256, " ", now()),
        Err(CaError::Generate { .. })
    ));
}

#[test]
fn ca_pem_round_trip_keeps_identity_and_can_issue() {
    for ca in [rsa_ca(), ec_ca()] {
        let (cert_pem, key_pem) = (ca.cert_pem(), ca.key_pem());
        assert!(cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let again = Ca::from_pem(&cert_pem, &key_pem).unwrap();
        assert_eq!(again.thumbprint(), ca.thumbprint());
        assert_eq!(again.cert_der(), ca.cert_der());
        assert_eq!(again.not_after(), ca.not_after());
        // Certificates from the reloaded CA verify against the original one.
        let (der, _) = testing::device_csr("ROUNDTRIP", KeyAlgorithm::EcdsaP256);
        let csr = verify_csr(&der, 2048).unwrap();
        let cert = again
            .issue_device_cert(&csr, "ROUNDTRIP", Duration::from_secs(600), now())
            .unwrap();
        assert_eq!(
            ca.authenticate_device_cert(&cert.der, now())
                .unwrap()
                .device_id,
            "ROUNDTRIP"
        );
        // Debug never shows the key.
        let dbg = format!("{again:?}");
        assert!(!dbg.contains("PRIVATE") && dbg.contains(&ca.thumbprint()));
    }
}

#[test]
fn ca_from_pem_refuses_mismatch_and_non_ca() {
    let load_err = |r: Result<Ca, CaError>| match r {
        Err(e @ CaError::Load { .. }) => {
            assert!(!e.is_peer_fault());
            e.to_string()
        }
        other => panic!("{other:?}"),
    };
    let e = load_err(Ca::from_pem(&rsa_ca().cert_pem(), &ec_ca().key_pem()));
    assert!(e.contains("does not match"), "{e}");
    load_err(Ca::from_pem(&ec_ca().cert_pem(), &rsa_ca().key_pem()));
    load_err(Ca::from_pem("", &ec_ca().key_pem()));
    load_err(Ca::from_pem(&ec_ca().cert_pem(), "not a key"));
    load_err(Ca::from_pem(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        &ec_ca().key_pem(),
    ));
    // A leaf (the TLS server certificate) is not a CA.
    let (leaf, leaf_key) = ec_ca()
        .issue_server_cert(&["localhost".into()], KeyAlgorithm::EcdsaP256, now())
        .unwrap();
    let e = load_err(Ca::from_pem(&leaf, &leaf_key));
    assert!(e.contains("not a CA"), "{e}");
    // A self-signed CA followed by anything else is refused: a bundle is an intermediate and
    // the root that issued it (ca::constraints).
    let bundle = format!("{}{}", ec_ca().cert_pem(), rsa_ca().cert_pem());
    let e = load_err(Ca::from_pem(&bundle, &ec_ca().key_pem()));
    assert!(e.contains("give the CA alone"), "{e}");
}

#[test]
fn ca_from_openssl_made_ca() {
    // An admin-supplied CA (PKCS#1 RSA key, PrintableString subject) loads and issues
    // certificates whose issuer name is byte-identical to the CA subject.
    let Some(dir) = super::openssl_dir("admin-supplied CA") else {
        return;
    };
    let d = dir.path();
    let (ok, out) = super::openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "k.pem",
            "-out",
            "c.pem",
            "-days",
            "30",
            "-subj",
            "/C=DE/O=Example Corp/CN=Example MDM CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = super::openssl(
        d,
        &["rsa", "-in", "k.pem", "-traditional", "-out", "k1.pem"],
    );
    assert!(ok, "{out}");
    let cert_pem = std::fs::read_to_string(d.join("c.pem")).unwrap();
    let key_pem = std::fs::read_to_string(d.join("k1.pem")).unwrap();
    assert!(key_pem.contains("BEGIN RSA PRIVATE KEY"));
    let ca = Ca::from_pem(&cert_pem, &key_pem).unwrap();
    let (der, _) = testing::device_csr("ADMINCA", KeyAlgorithm::Rsa2048);
    let csr = verify_csr(&der, 2048).unwrap();
    let cert = ca
        .issue_device_cert(&csr, "ADMINCA", Duration::from_secs(86400), now())
        .unwrap();
    let (_, x) = X509Certificate::from_der(&cert.der).unwrap();
    let (_, cax) = X509Certificate::from_der(ca.cert_der()).unwrap();
    assert_eq!(x.issuer().as_raw(), cax.subject().as_raw());
    // Clamped to the CA's 30 days.
    assert!(cert.not_after <= ca.not_after());
    std::fs::write(d.join("leaf.pem"), &cert.pem).unwrap();
    let (ok, out) = super::openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "c.pem",
            "-purpose",
            "sslclient",
            "leaf.pem",
        ],
    );
    assert!(ok, "{out}");
}

#[test]
fn ca_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Ca>();
    assert_send_sync::<winmdm::ca::CsrVerified>();
}
