//! The issued device certificate profile, checked field by field.

use std::time::Duration;

use time::OffsetDateTime;
use winmdm::ca::{
    device_id_from_cert, testing, verify_csr, Ca, CaError, CsrVerified, KeyAlgorithm,
};
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{ec_ca, now, openssl, openssl_dir, rsa_ca};

/// Everything a device (or Windows' chain engine) would look at.
pub fn check_device_cert(
    ca: &Ca,
    cert: &winmdm::ca::IssuedCert,
    csr: &CsrVerified,
    device_id: &str,
    validity: Duration,
    t: OffsetDateTime,
) {
    let (rest, x) = X509Certificate::from_der(&cert.der).unwrap();
    assert!(rest.is_empty());
    let (_, cax) = X509Certificate::from_der(ca.cert_der()).unwrap();

    // Certifies exactly the request's key, chains to the CA.
    assert_eq!(x.public_key().raw, csr.spki_der());
    x.verify_signature(Some(cax.public_key())).unwrap();
    assert_eq!(
        x.issuer().as_raw(),
        cax.subject().as_raw(),
        "issuer name bytes"
    );
    assert_eq!(x.version().0, 2, "v3");

    // Subject = the binding.
    let cns: Vec<_> = x.subject().iter_common_name().collect();
    assert_eq!(cns.len(), 1);
    assert_eq!(cns[0].as_str().unwrap(), device_id);
    assert_eq!(x.subject().iter().count(), 1, "CN only");
    assert_eq!(cert.subject, format!("CN={device_id}"));

    // Serial: 16 bytes, positive, as reported.
    assert_eq!(x.raw_serial().len(), 16);
    assert_eq!(x.raw_serial()[0] & 0x80, 0);
    assert_eq!(cert.serial_hex.len(), 32);
    assert_eq!(cert.serial_hex, x.raw_serial_as_string().replace(':', ""));
    assert_eq!(cert.thumbprint, winmdm::ca::thumbprint(&cert.der));

    // Validity: backdated at most 5 minutes, as long as requested.
    let nb = x.validity().not_before.to_datetime();
    let na = x.validity().not_after.to_datetime();
    assert!(
        nb <= t && t - nb <= time::Duration::minutes(5),
        "{nb} vs {t}"
    );
    let want = t + validity;
    assert!(
        (na - want).abs() <= time::Duration::SECOND,
        "{na} vs {want}"
    );
    assert_eq!((nb, na), (cert.not_before, cert.not_after));

    // Extensions.
    let mut seen = Vec::new();
    let mut aki = None;
    let mut ski = None;
    for ext in x.extensions() {
        seen.push(ext.oid.to_id_string());
        match ext.parsed_extension() {
            ParsedExtension::KeyUsage(ku) => {
                assert!(ext.critical, "KU critical");
                assert!(ku.digital_signature());
                assert_eq!(ku.key_encipherment(), csr.key_algorithm() == "RSA");
                assert!(!ku.key_cert_sign() && !ku.crl_sign() && !ku.non_repudiation());
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                assert!(eku.client_auth);
                assert!(!eku.server_auth && !eku.any && eku.other.is_empty());
                assert!(!eku.code_signing && !eku.email_protection);
            }
            ParsedExtension::BasicConstraints(bc) => {
                assert!(!bc.ca);
                assert!(ext.critical);
            }
            ParsedExtension::AuthorityKeyIdentifier(a) => aki = a.key_identifier.clone(),
            ParsedExtension::SubjectKeyIdentifier(s) => ski = Some(s.clone()),
            other => panic!("unexpected extension {}: {other:?}", ext.oid),
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    let ca_ski = cax
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(s) => Some(s.0.to_vec()),
            _ => None,
        })
        .unwrap();
    assert_eq!(aki.unwrap().0, &ca_ski[..], "AKI = CA SKI");
    assert!(!ski.unwrap().0.is_empty());

    // Read back by the management side.
    let id = device_id_from_cert(&cert.der).unwrap();
    assert_eq!(id.device_id, device_id);
    assert_eq!(id.serial_hex, cert.serial_hex);
    assert_eq!(id.thumbprint, cert.thumbprint);
    let auth = ca.authenticate_device_cert(&cert.der, t).unwrap();
    assert_eq!(auth, id);
}

#[test]
fn ca_issue_profile_for_generated_csrs() {
    let validity = Duration::from_secs(30 * 86400);
    for (ca, alg) in [
        (rsa_ca(), KeyAlgorithm::Rsa2048),
        (rsa_ca(), KeyAlgorithm::EcdsaP256),
        (ec_ca(), KeyAlgorithm::Rsa2048),
        (ec_ca(), KeyAlgorithm::EcdsaP384),
    ] {
        let (der, _key) = testing::device_csr("0123456789ABCDEF0123456789ABCDEF", alg);
        let csr = verify_csr(&der, 2048).unwrap();
        assert_eq!(
            csr.device_id_ext(),
            Some("0123456789ABCDEF0123456789ABCDEF")
        );
        let t = now();
        let cert = ca
            .issue_device_cert(&csr, "0123456789ABCDEF0123456789ABCDEF", validity, t)
            .unwrap();
        check_device_cert(
            ca,
            &cert,
            &csr,
            "0123456789ABCDEF0123456789ABCDEF",
            validity,
            t,
        );
    }
}

#[test]
fn ca_issue_serials_are_unique() {
    let (der, _) = testing::device_csr("DEV1", KeyAlgorithm::EcdsaP256);
    let csr = verify_csr(&der, 2048).unwrap();
    let mut serials = std::collections::HashSet::new();
    for _ in 0..50 {
        let c = ec_ca()
            .issue_device_cert(&csr, "DEV1", Duration::from_secs(60), now())
            .unwrap();
        assert!(serials.insert(c.serial_hex));
    }
}

#[test]
fn ca_issue_rejects_bad_device_ids_and_validity() {
    let (der, _) = testing::device_csr("DEV1", KeyAlgorithm::EcdsaP256);
    let csr = verify_csr(&der, 2048).unwrap();
    // No DeviceID extension: any well-formed id goes, bad ones do not.
    let (plain, _) = {
        let key = rcgen::KeyPair::generate().unwrap();
        let p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        (p.serialize_request(&key).unwrap().der().to_vec(), key)
    };
    let plain = verify_csr(&plain, 2048).unwrap();
    assert_eq!(plain.device_id_ext(), None);
    let day = Duration::from_secs(86400);
    assert!(ec_ca()
        .issue_device_cert(&plain, "ANY-ID", day, now())
        .is_ok());
    for bad in ["", "CN=x", "a,b", "x\0", &"A".repeat(65)] {
        let e = ec_ca()
            .issue_device_cert(&plain, bad, day, now())
            .unwrap_err();
        assert!(matches!(e, CaError::InvalidDeviceId { .. }), "{bad:?}: {e}");
    }
    let e = ec_ca()
        .issue_device_cert(&csr, "DEV1", Duration::ZERO, now())
        .unwrap_err();
    assert!(matches!(e, CaError::InvalidValidity { .. }));
    // Never outlives the CA.
    let long = ec_ca()
        .issue_device_cert(&csr, "DEV1", Duration::from_secs(100 * 365 * 86400), now())
        .unwrap();
    assert!(long.not_after <= ec_ca().not_after());
    // A CA past its NotAfter issues nothing.
    let later = ec_ca().not_after() + time::Duration::days(1);
    let e = ec_ca()
        .issue_device_cert(&csr, "DEV1", day, later)
        .unwrap_err();
    assert!(matches!(e, CaError::InvalidValidity { .. }), "{e}");
}

#[test]
fn ca_authenticate_rejects_foreign_expired_and_server_certs() {
    let (der, _) = testing::device_csr("DEV2", KeyAlgorithm::EcdsaP256);
    let csr = verify_csr(&der, 2048).unwrap();
    let t = now();
    let cert = ec_ca()
        .issue_device_cert(&csr, "DEV2", Duration::from_secs(3600), t)
        .unwrap();
    let rejected = |r: Result<_, CaError>| matches!(r, Err(CaError::CertRejected { .. }));
    assert!(rejected(rsa_ca().authenticate_device_cert(&cert.der, t)));
    assert!(rejected(ec_ca().authenticate_device_cert(
        &cert.der,
        t + time::Duration::hours(2)
    )));
    assert!(rejected(ec_ca().authenticate_device_cert(
        &cert.der,
        t - time::Duration::hours(1)
    )));
    let (srv, _) = ec_ca()
        .issue_server_cert(&["mdm.example.com".into()], KeyAlgorithm::EcdsaP256, t)
        .unwrap();
    let srv = rustls::pki_types::pem::PemObject::from_pem_slice(srv.as_bytes())
        .map(|c: rustls::pki_types::CertificateDer| c.to_vec())
        .unwrap();
    // A server certificate has no clientAuth (and no DeviceID).
    assert!(ec_ca().authenticate_device_cert(&srv, t).is_err());
    // One flipped bit in the signature.
    let mut bad = cert.der.clone();
    let n = bad.len() - 3;
    bad[n] ^= 1;
    assert!(rejected(ec_ca().authenticate_device_cert(&bad, t)));
    assert!(matches!(
        device_id_from_cert(b"junk"),
        Err(CaError::CertMalformed { .. })
    ));
}

/// The CA remembers which certificates' signatures verified (`ca::verified`): only those exact
/// bytes skip the signature check, and time is checked every time.
#[test]
fn ca_authenticate_remembers_only_the_exact_bytes_that_verified() {
    let (der, _) = testing::device_csr("DEV3", KeyAlgorithm::EcdsaP256);
    let csr = verify_csr(&der, 2048).unwrap();
    let t = now();
    let ca = Ca::generate(KeyAlgorithm::EcdsaP256, "remembering CA", t).unwrap();
    let cert = ca
        .issue_device_cert(&csr, "DEV3", Duration::from_secs(3600), t)
        .unwrap();
    let rejected = |r: Result<_, CaError>| matches!(r, Err(CaError::CertRejected { .. }));
    assert_eq!(
        ca.authenticate_device_cert(&cert.der, t).unwrap().device_id,
        "DEV3"
    );
    // Each byte of the signature value flipped, after the genuine one verified.
    let sig_len = 64;
    for i in 1..=sig_len {
        let mut bad = cert.der.clone();
        let n = bad.len() - i;
        bad[n] ^= 0x40;
        assert!(
            rejected(ca.authenticate_device_cert(&bad, t)),
            "byte {i} from the end flipped"
        );
    }
    // The genuine one again: accepted; outside its validity: refused even though remembered.
    assert!(ca.authenticate_device_cert(&cert.der, t).is_ok());
    assert!(rejected(ca.authenticate_device_cert(
        &cert.der,
        t + time::Duration::hours(2)
    )));
    // Another CA of the same name never accepts it, whatever this one remembers.
    let twin = Ca::generate(KeyAlgorithm::EcdsaP256, "remembering CA", t).unwrap();
    assert!(rejected(twin.authenticate_device_cert(&cert.der, t)));
}

#[test]
fn ca_issue_openssl_verify_sslclient() {
    let Some(dir) = openssl_dir("openssl verify -purpose sslclient") else {
        return;
    };
    let Some((der, device_id)) = super::windows_csr() else {
        return;
    };
    let csr = verify_csr(&der, 2048).unwrap();
    for (i, ca) in [rsa_ca(), ec_ca()].into_iter().enumerate() {
        let cert = ca
            .issue_device_cert(&csr, device_id, Duration::from_secs(86400), now())
            .unwrap();
        let (ca_f, leaf_f) = (format!("ca{i}.pem"), format!("leaf{i}.pem"));
        std::fs::write(dir.path().join(&ca_f), ca.cert_pem()).unwrap();
        std::fs::write(dir.path().join(&leaf_f), &cert.pem).unwrap();
        let (ok, out) = openssl(
            dir.path(),
            &["verify", "-CAfile", &ca_f, "-purpose", "sslclient", &leaf_f],
        );
        assert!(ok, "{out}");
        // And it is not a server certificate.
        let (ok, _) = openssl(
            dir.path(),
            &["verify", "-CAfile", &ca_f, "-purpose", "sslserver", &leaf_f],
        );
        assert!(!ok);
    }
}
