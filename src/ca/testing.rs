//! Test and benchmark helpers: Windows-like requests. Not part of the supported API.
#![doc(hidden)]

use rcgen::{CertificateParams, CustomExtension, DistinguishedName, DnType, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateSigningRequestDer;

use super::KeyAlgorithm;

/// OID components of the Windows DeviceID request extension.
pub const OID_MS_DEVICE_ID: &[u64] = &[1, 3, 6, 1, 4, 1, 311, 66, 1, 0];

/// A request shaped like the one Windows sends: subject `CN=<guid>!<device_id>\0`, requested
/// extension `1.3.6.1.4.1.311.66.1.0` = `device_id` + NUL, signed with a fresh key of `alg`
/// (SHA-256/384 rather than Windows' SHA-1, which rcgen cannot produce). Returns the DER
/// request and its key.
///
/// # Panics
/// If key generation or signing fails (test helper).
pub fn device_csr(device_id: &str, alg: KeyAlgorithm) -> (Vec<u8>, KeyPair) {
    try_device_csr(device_id, alg).expect("key generation and CSR signing")
}

/// [`device_csr`] without the panic (for tools: `winmdm trace replay` enrolls with it).
pub fn try_device_csr(
    device_id: &str,
    alg: KeyAlgorithm,
) -> Result<(Vec<u8>, KeyPair), rcgen::Error> {
    let key = alg.generate_key()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("BA405A5D-B1C7-4737-81C8-8F379A!{device_id}\0"),
    );
    params.distinguished_name = dn;
    let mut value = device_id.as_bytes().to_vec();
    value.push(0);
    params.custom_extensions = vec![CustomExtension::from_oid_content(OID_MS_DEVICE_ID, value)];
    let csr = params.serialize_request(&key)?;
    Ok((csr.der().to_vec(), key))
}

/// A PKCS#10 request with a 1024-bit RSA key (`certs/test-rsa1024.csr`, made with openssl;
/// see `certs/README.md`). aws-lc-rs will not generate or load RSA keys below 2048 bits.
pub fn rsa1024_csr() -> Vec<u8> {
    CertificateSigningRequestDer::from_pem_slice(RSA1024_CSR_PEM.as_bytes())
        .expect("bundled 1024-bit CSR")
        .as_ref()
        .to_vec()
}

const RSA1024_CSR_PEM: &str = include_str!("../../certs/test-rsa1024.csr");

/// A ROBO renewal token as a device makes it (MS-WSTEP `ValueType …#PKCS7`): a CMS
/// `SignedData` (RFC 5652) holding `csr_der` as `id-data` content, the signer certificate, and
/// one SignerInfo (IssuerAndSerialNumber, SHA-256, signed attributes contentType +
/// messageDigest) signed with `signer_key` (RSA PKCS#1 v1.5 or ECDSA P-256). Pass the current
/// certificate and key of the device for a genuine request; anything else for forgeries.
///
/// # Panics
/// If `signer_cert_der` is not a certificate or the key cannot sign (test helper).
pub fn renewal_token(csr_der: &[u8], signer_cert_der: &[u8], signer_key: &KeyPair) -> Vec<u8> {
    use aws_lc_rs::{digest, rand, signature};
    use x509_parser::prelude::{FromDer, X509Certificate};

    const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
    const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    const CONTENT_TYPE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03];
    const MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
    const SHA256_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
    const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let n = content.len();
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let bytes: Vec<u8> = n
                .to_be_bytes()
                .iter()
                .copied()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend_from_slice(&bytes);
        }
        out.extend_from_slice(content);
        out
    }
    let cat = |parts: &[&[u8]]| parts.concat();
    let oid = |o: &[u8]| tlv(0x06, o);
    let null = tlv(0x05, &[]);

    let (_, cert) = X509Certificate::from_der(signer_cert_der).expect("signer certificate");
    let sha256_alg = tlv(0x30, &cat(&[&oid(SHA256), &null]));
    let digest = digest::digest(&digest::SHA256, csr_der);
    let attrs = cat(&[
        &tlv(0x30, &cat(&[&oid(CONTENT_TYPE), &tlv(0x31, &oid(DATA))])),
        &tlv(
            0x30,
            &cat(&[
                &oid(MESSAGE_DIGEST),
                &tlv(0x31, &tlv(0x04, digest.as_ref())),
            ]),
        ),
    ]);
    let to_sign = tlv(0x31, &attrs);
    let pkcs8 = signer_key.serialize_der();
    let rng = rand::SystemRandom::new();
    let (sig_alg, sig) = match signature::RsaKeyPair::from_pkcs8(&pkcs8) {
        Ok(kp) => {
            let mut sig = vec![0u8; kp.public_modulus_len()];
            kp.sign(&signature::RSA_PKCS1_SHA256, &rng, &to_sign, &mut sig)
                .expect("RSA signing");
            (tlv(0x30, &cat(&[&oid(SHA256_RSA), &null])), sig)
        }
        Err(_) => {
            let kp = signature::EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &pkcs8,
            )
            .expect("RSA or P-256 key");
            let sig = kp.sign(&rng, &to_sign).expect("ECDSA signing");
            (tlv(0x30, &oid(ECDSA_SHA256)), sig.as_ref().to_vec())
        }
    };
    let sid = tlv(
        0x30,
        &cat(&[cert.issuer().as_raw(), &tlv(0x02, cert.raw_serial())]),
    );
    let signer_info = tlv(
        0x30,
        &cat(&[
            &tlv(0x02, &[1]),
            &sid,
            &sha256_alg,
            &tlv(0xa0, &attrs),
            &sig_alg,
            &tlv(0x04, &sig),
        ]),
    );
    let signed_data = tlv(
        0x30,
        &cat(&[
            &tlv(0x02, &[1]),
            &tlv(0x31, &sha256_alg),
            &tlv(0x30, &cat(&[&oid(DATA), &tlv(0xa0, &tlv(0x04, csr_der))])),
            &tlv(0xa0, signer_cert_der),
            &tlv(0x31, &signer_info),
        ]),
    );
    tlv(0x30, &cat(&[&oid(SIGNED_DATA), &tlv(0xa0, &signed_data)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{verify_csr, Ca, CaError};

    #[test]
    fn renewal_token_verifies_and_binds_its_signer() {
        let now = time::OffsetDateTime::from_unix_timestamp(1_795_450_097).unwrap();
        let ca = Ca::generate(KeyAlgorithm::EcdsaP256, "Test CA", now).unwrap();
        let dev = "1E08C6E95D8BB843B1278FF45BC60CC6";
        for alg in [KeyAlgorithm::Rsa2048, KeyAlgorithm::EcdsaP256] {
            let (old_csr, old_key) = device_csr(dev, alg);
            let old = ca
                .issue_device_cert(
                    &verify_csr(&old_csr, 2048).unwrap(),
                    dev,
                    std::time::Duration::from_secs(86400),
                    now,
                )
                .unwrap();
            let (new_csr, _) = device_csr(dev, KeyAlgorithm::Rsa2048);
            let p7 = renewal_token(&new_csr, &old.der, &old_key);
            let (csr, who) = ca.verify_renewal(&p7, 2048, now).unwrap();
            assert_eq!(who.serial_hex, old.serial_hex);
            assert_eq!(
                csr.spki_der(),
                verify_csr(&new_csr, 2048).unwrap().spki_der()
            );
            // Signed with a key that is not the certificate's: refused.
            let (_, other_key) = device_csr(dev, alg);
            assert!(matches!(
                ca.verify_renewal(&renewal_token(&new_csr, &old.der, &other_key), 2048, now),
                Err(CaError::CsrSignatureInvalid)
            ));
        }
    }
}
