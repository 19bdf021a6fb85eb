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
    let key = alg.generate_key().expect("key generation");
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
    let csr = params.serialize_request(&key).expect("CSR signing");
    (csr.der().to_vec(), key)
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
