//! The TLS server certificate, loaded by rustls, and a full mutual-TLS handshake in memory
//! with a device certificate.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use winmdm::ca::{testing, verify_csr, Ca, CaError, KeyAlgorithm};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{ec_ca, now, rsa_ca};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn server_config(ca: &Ca, cert_pem: &str, key_pem: &str) -> rustls::ServerConfig {
    let mut chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    chain.push(CertificateDer::from(ca.cert_der().to_vec()));
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert_der().to_vec()))
        .unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .unwrap();
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap()
}

#[test]
fn ca_server_cert_has_sans_and_server_auth_and_loads_in_rustls() {
    for (ca, alg) in [
        (rsa_ca(), KeyAlgorithm::Rsa2048),
        (ec_ca(), KeyAlgorithm::EcdsaP256),
    ] {
        let hosts = vec!["mdm.example.com".to_string(), "127.0.0.1".to_string()];
        let (cert_pem, key_pem) = ca.issue_server_cert(&hosts, alg, now()).unwrap();
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        let (_, x) = X509Certificate::from_der(&der).unwrap();
        x.verify_signature(Some(
            X509Certificate::from_der(ca.cert_der())
                .unwrap()
                .1
                .public_key(),
        ))
        .unwrap();
        let san = x.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            vec![
                GeneralName::DNSName("mdm.example.com"),
                GeneralName::IPAddress(&[127, 0, 0, 1]),
            ]
        );
        let eku = x.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        assert!(!x.basic_constraints().unwrap().unwrap().value.ca);
        let days = (x.validity().not_after.to_datetime() - x.validity().not_before.to_datetime())
            .whole_days();
        assert_eq!(days, 365);
        let _ = server_config(ca, &cert_pem, &key_pem);
    }
}

#[test]
fn ca_server_cert_rejects_bad_hosts() {
    for hosts in [
        vec![],
        vec!["mdm.example.com:443".to_string()],
        vec!["a b".to_string()],
    ] {
        let e = ec_ca()
            .issue_server_cert(&hosts, KeyAlgorithm::EcdsaP256, now())
            .unwrap_err();
        assert!(matches!(e, CaError::InvalidHost { .. }), "{e}");
    }
}

/// Moves TLS records between the two ends until neither has anything to send.
fn pump(c: &mut rustls::ClientConnection, s: &mut rustls::ServerConnection) {
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let moved_c = !buf.is_empty();
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
        }
        s.process_new_packets().unwrap();
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let moved_s = !buf.is_empty();
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        c.process_new_packets().unwrap();
        if !moved_c && !moved_s && !c.is_handshaking() && !s.is_handshaking() {
            return;
        }
    }
}

#[test]
fn ca_device_cert_authenticates_over_mutual_tls() {
    // The device side: the Windows capture's key is not ours, so use a Windows-like request
    // with a key we hold, exactly as a device would.
    for ca in [rsa_ca(), ec_ca()] {
        let (srv_pem, srv_key) = ca
            .issue_server_cert(&["mdm.example.com".into()], KeyAlgorithm::EcdsaP256, now())
            .unwrap();
        let server = Arc::new(server_config(ca, &srv_pem, &srv_key));

        let (csr_der, device_key) =
            testing::device_csr("1E08C6E95D8BB843B1278FF45BC60CC6", KeyAlgorithm::Rsa2048);
        let csr = verify_csr(&csr_der, 2048).unwrap();
        let issued = ca
            .issue_device_cert(
                &csr,
                "1E08C6E95D8BB843B1278FF45BC60CC6",
                Duration::from_secs(3600),
                now(),
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.cert_der().to_vec()))
            .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from(issued.der.clone())],
                PrivateKeyDer::from_pem_slice(device_key.serialize_pem().as_bytes()).unwrap(),
            )
            .unwrap();
        let mut c = rustls::ClientConnection::new(
            Arc::new(client),
            ServerName::try_from("mdm.example.com").unwrap(),
        )
        .unwrap();
        let mut s = rustls::ServerConnection::new(server).unwrap();
        pump(&mut c, &mut s);
        assert!(!c.is_handshaking() && !s.is_handshaking());
        c.writer().write_all(b"SyncML").unwrap();
        pump(&mut c, &mut s);
        let mut got = [0u8; 6];
        s.reader().read_exact(&mut got).unwrap();
        assert_eq!(&got, b"SyncML");
        // The server sees the device certificate and reads the binding from it.
        let peer = s.peer_certificates().unwrap();
        let id = ca.authenticate_device_cert(&peer[0], now()).unwrap();
        assert_eq!(id.device_id, "1E08C6E95D8BB843B1278FF45BC60CC6");
        assert_eq!(id.serial_hex, issued.serial_hex);
    }
}
