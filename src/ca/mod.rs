//! The enrollment certificate authority.
//!
//! # What this module owns
//!
//! * [`verify_csr`]: checks a PKCS#10 request exactly as Windows sends it in the MS-WSTEP
//!   `wsse:BinarySecurityToken` (`ValueType=…#PKCS10`) and returns the proof token
//!   [`CsrVerified`]. It is the only code that can make one.
//! * [`Ca`]: the CA key and certificate. It generates a new CA ([`Ca::generate`], or
//!   [`Ca::generate_constrained`]: name constraints and EKU limits, what the server makes),
//!   reloads one ([`Ca::from_pem`], also an intermediate with its root), issues device identity certificates ([`Ca::issue_device_cert`], which
//!   only accepts a [`CsrVerified`]) and a TLS server certificate ([`Ca::issue_server_cert`]).
//! * [`device_id_from_cert`] / [`Ca::authenticate_device_cert`]: read the device binding back out
//!   of a certificate presented on the management endpoint.
//! * [`Ca::verify_renewal`]: MS-WSTEP renewal (ROBO) tokens, a PKCS#7 `SignedData` around the
//!   new PKCS#10 signed by the device's current certificate (tested with OpenSSL-made CMS only).
//! * [`verify_detached_signature`] / [`verify_signature_header`]: the DM client's message
//!   signatures (`DMClient/…/RequireMessageSigning`, HTTP header `MDM-Signature`), a detached
//!   CMS `SignedData` over the SyncML body made with the device certificate this CA issued; for
//!   deployments where a TLS-terminating load balancer hides the client certificate.
//!
//! # What it must not do
//!
//! No HTTP, no store, no file or network I/O, no clock: the caller passes `now`, and persists
//! the PEM strings returned by [`Ca::cert_pem`] / [`Ca::key_pem`] itself. [`Ca::key_pem`] is
//! secret: never log it ([`Ca`]'s `Debug` omits it).
//!
//! # The device binding
//!
//! **A device is identified by the subject common name of the certificate this CA issued to it:
//! `CN=<DeviceID>`**, where `<DeviceID>` is the MS-MDE2 `AdditionalContext` `DeviceID` (32 hex
//! characters on Windows, the same string as `./DevInfo/DevId` and the SyncML `Source/LocURI`).
//! The provisioning document points the DM client at that certificate with
//! `SSLCLIENTCERTSEARCHCRITERIA=Subject=CN%3D<DeviceID>`, and the management endpoint reads it
//! back with [`device_id_from_cert`]. The CA returns each certificate's serial
//! ([`IssuedCert::serial_hex`]) and SHA-1 thumbprint so the caller can record them (revocation,
//! renewal, and the `CertificateStore/My/User/<thumbprint>` node of the provisioning document).
//!
//! The DeviceID is deliberately **not** repeated in a subjectAltName: it is neither a DNS name,
//! an e-mail address nor a URI, Windows does not look at the SAN of an MDM client certificate,
//! and a second copy would only create a second source of truth. The CN is the one binding.
//!
//! The CSR's own subject is ignored (Windows sends `<GUID>!<DeviceID>\0` as a PrintableString
//! that is not even valid PrintableString). Windows also puts the DeviceID into the requested
//! extension `1.3.6.1.4.1.311.66.1.0`; [`verify_csr`] exposes it as
//! [`CsrVerified::device_id_ext`] and [`Ca::issue_device_cert`] refuses to certify a different
//! DeviceID than that one ([`CaError::DeviceIdMismatch`]).
//!
//! # Issued device certificates
//!
//! Random 126-bit positive serial (16 bytes, top bit clear and second bit set so the encoding is
//! always 16 bytes), `CN=<DeviceID>` (a PrintableString whenever the DeviceID fits that alphabet,
//! as in every certificate Windows is known to accept; UTF8String otherwise), NotBefore = now − 5 minutes (clock skew; never days),
//! NotAfter = now + the requested validity (clamped to the CA's NotAfter), KeyUsage
//! digitalSignature + keyEncipherment (critical), ExtendedKeyUsage clientAuth only,
//! BasicConstraints CA:FALSE (critical), SubjectKeyIdentifier, AuthorityKeyIdentifier = the CA's
//! SubjectKeyIdentifier. Signed with RSA-SHA256 by RSA CAs, ECDSA-SHA256 (P-256) or ECDSA-SHA384
//! (P-384) by EC CAs. The certified `SubjectPublicKeyInfo` is byte-identical to the CSR's:
//! rcgen re-encodes it from (algorithm, key bits), so [`verify_csr`] checks that this gives back
//! the request's bytes and refuses the rare key it cannot reproduce (an RSA key without the NULL
//! algorithm parameter, for instance) with [`CaError::KeyAlgorithmUnsupported`].
//!
//! # Algorithms accepted in CSRs
//!
//! Keys: RSA (at least `min_rsa_bits`, never below 1024), EC P-256 and P-384. Signatures:
//! RSA PKCS#1 v1.5 with SHA-1 (both `1.2.840.113549.1.1.5` and the OIW `1.3.14.3.2.29` that
//! Windows uses), SHA-256, SHA-384, SHA-512; RSASSA-PSS with SHA-256/384/512 (MGF1 with the same
//! hash, salt length = hash length, RSA ≥ 2048); ECDSA with SHA-256/384. SHA-1 is accepted only
//! as proof of possession of the key in the request: nothing we issue is signed with SHA-1.
//!
//! # Use
//!
//! ```no_run
//! use std::time::Duration;
//! use winmdm::ca::{verify_csr, Ca, KeyAlgorithm, DEFAULT_MIN_RSA_BITS};
//!
//! # fn pkcs10_from_soap() -> Vec<u8> { Vec::new() }
//! # fn main() -> Result<(), winmdm::ca::CaError> {
//! let now = time::OffsetDateTime::now_utc(); // the server takes it from its Clock
//! // First start: generate, then persist ca.cert_pem() and ca.key_pem() (secret).
//! let ca = Ca::generate(KeyAlgorithm::Rsa2048, "winmdm CA", now)?;
//! // Later starts: Ca::from_pem(&cert_pem, &key_pem)?
//!
//! // MS-WSTEP RequestSecurityToken: the base64-decoded BinarySecurityToken.
//! let csr = verify_csr(&pkcs10_from_soap(), DEFAULT_MIN_RSA_BITS)?; // peer faults: 4xx/fault
//! let cert = ca.issue_device_cert(&csr, "1E08C6E95D8BB843B1278FF45BC60CC6",
//!                                 Duration::from_secs(365 * 86400), now)?;
//! // Provisioning document: cert.thumbprint / base64(cert.der) under My/User,
//! // ca.thumbprint() / base64(ca.cert_der()) under Root/System; record cert.serial_hex.
//! # Ok(()) }
//! ```

mod cms;
mod csr;
#[doc(hidden)]
pub mod fuzzing;
mod identity;
mod issue;
mod renew;
mod sigalg;
pub mod testing;
mod verified;

pub use cms::{
    verify_detached_signature, verify_signature_header, MAX_SIGNATURE_LEN, SIGNATURE_HEADER_NAMES,
};
pub use csr::{verify_csr, CsrVerified, MAX_CSR_LEN};
pub use identity::{device_id_from_cert, CertIdentity};
pub use issue::{pem_encode, Ca, IssuedCert};

use std::fmt;
use std::str::FromStr;

/// Smallest RSA modulus [`verify_csr`] will ever accept, whatever the caller asks for.
pub const ABSOLUTE_MIN_RSA_BITS: usize = 1024;

/// Default minimum RSA modulus for device keys (Windows sends 2048-bit keys).
pub const DEFAULT_MIN_RSA_BITS: usize = 2048;

/// Longest DeviceID accepted as a certificate subject (X.520 `ub-common-name`).
pub const MAX_DEVICE_ID_LEN: usize = 64;

/// Everything that can go wrong in the CA.
///
/// Peer faults (a device sent something we refuse) are kept apart from local faults (key
/// generation, a bad CA file, a signing failure); see [`CaError::is_peer_fault`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// The CSR is not well-formed DER PKCS#10 (truncated, trailing bytes, wrong version,
    /// undecodable public key, malformed DeviceID extension…).
    #[error("malformed certificate request: {reason}")]
    CsrMalformed {
        /// What was wrong, for logs (never contains key material).
        reason: String,
    },
    /// The CSR's signature does not verify with the public key it carries: the requester did not
    /// prove possession of the private key, or the request was altered.
    #[error("certificate request signature does not verify")]
    CsrSignatureInvalid,
    /// The CSR is signed with an algorithm we do not accept.
    #[error("unsupported certificate request signature algorithm {oid}")]
    CsrAlgorithmUnsupported {
        /// Signature algorithm OID (dotted), with a note when the parameters are the problem.
        oid: String,
    },
    /// The RSA key in the CSR is shorter than the configured minimum.
    #[error("RSA key of {bits} bits is too small (minimum {min})")]
    KeyTooSmall {
        /// Modulus length of the requested key.
        bits: usize,
        /// The minimum in force.
        min: usize,
    },
    /// The CSR's public key is neither RSA nor EC P-256/P-384.
    #[error("unsupported public key algorithm {oid}")]
    KeyAlgorithmUnsupported {
        /// Key algorithm OID (dotted), or the curve OID for unsupported EC curves.
        oid: String,
    },
    /// The DeviceID the caller asked to certify differs from the one the device put in the CSR
    /// extension `1.3.6.1.4.1.311.66.1.0`.
    #[error("device id {requested:?} does not match the CSR's device id {in_csr:?}")]
    DeviceIdMismatch {
        /// DeviceID passed to [`Ca::issue_device_cert`] (from the enrollment context).
        requested: String,
        /// DeviceID found in the CSR extension.
        in_csr: String,
    },
    /// The DeviceID cannot be used as a certificate subject (empty, too long, or characters
    /// outside `A-Z a-z 0-9 - _ . { } @`).
    #[error("device id {device_id:?} is not usable as a certificate subject: {reason}")]
    InvalidDeviceId {
        /// The offending value (truncated to 80 characters).
        device_id: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A certificate presented by a peer could not be parsed, or does not carry a device
    /// binding (see [`device_id_from_cert`]).
    #[error("certificate not usable as a device identity: {reason}")]
    CertMalformed {
        /// What was wrong.
        reason: String,
    },
    /// A certificate presented by a peer was not issued by this CA, is outside its validity
    /// period, or lacks clientAuth (see [`Ca::authenticate_device_cert`]).
    #[error("certificate rejected: {reason}")]
    CertRejected {
        /// Why it was rejected.
        reason: String,
    },
    /// A CMS `SignedData` (the `MDM-Signature` message signature, see
    /// [`verify_detached_signature`]) is not well-formed, is larger than [`MAX_SIGNATURE_LEN`],
    /// is not base64, embeds its content instead of being detached, or does not have exactly
    /// one signer.
    #[error("malformed CMS signature: {reason}")]
    CmsMalformed {
        /// What was wrong, for logs.
        reason: String,
    },
    /// A CMS signature uses a digest or signature algorithm we do not accept (see
    /// [`verify_detached_signature`] for the list).
    #[error("unsupported CMS algorithm {oid}")]
    CmsAlgorithmUnsupported {
        /// Algorithm OID (dotted), with a note when the combination is the problem.
        oid: String,
    },
    /// A CMS signature does not carry the signer's certificate in its `certificates` field (or
    /// carries no certificates at all): the server keeps no copy of device certificates, so the
    /// signature cannot be checked.
    #[error("CMS signature does not carry its signer's certificate")]
    CmsSignerCertMissing,
    /// A CMS signature does not verify: the signed content was altered (messageDigest
    /// mismatch), the signature bytes were altered, or it was made with another key.
    #[error("message signature does not verify")]
    SignatureInvalid,
    /// Key generation or CA certificate self-signing failed.
    #[error("CA generation failed: {reason}")]
    Generate {
        /// Underlying error.
        reason: String,
    },
    /// The CA certificate or key PEM could not be loaded, is not a CA, or the key does not
    /// match the certificate.
    #[error("cannot load CA: {reason}")]
    Load {
        /// What was wrong (never contains key material).
        reason: String,
    },
    /// Building or signing a certificate failed.
    #[error("signing failed: {reason}")]
    Sign {
        /// Underlying error.
        reason: String,
    },
    /// A host name for the server certificate is neither a DNS name nor an IP literal, or the
    /// list is empty.
    #[error("invalid server host name {host:?}")]
    InvalidHost {
        /// The offending value.
        host: String,
    },
    /// The requested validity is zero, or the CA itself has expired at `now`.
    #[error("invalid validity: {reason}")]
    InvalidValidity {
        /// Why.
        reason: String,
    },
}

impl CaError {
    /// `true` when the error is the peer's fault (bad CSR, bad DeviceID, bad client
    /// certificate): answer with an MS-WSTEP fault / HTTP 4xx and log at `info`. `false` for
    /// local faults (CA configuration, key generation, signing): log at `error`, answer 5xx.
    pub fn is_peer_fault(&self) -> bool {
        match self {
            CaError::CsrMalformed { .. }
            | CaError::CsrSignatureInvalid
            | CaError::CsrAlgorithmUnsupported { .. }
            | CaError::KeyTooSmall { .. }
            | CaError::KeyAlgorithmUnsupported { .. }
            | CaError::DeviceIdMismatch { .. }
            | CaError::InvalidDeviceId { .. }
            | CaError::CertMalformed { .. }
            | CaError::CertRejected { .. }
            | CaError::CmsMalformed { .. }
            | CaError::CmsAlgorithmUnsupported { .. }
            | CaError::CmsSignerCertMissing
            | CaError::SignatureInvalid => true,
            CaError::Generate { .. }
            | CaError::Load { .. }
            | CaError::Sign { .. }
            | CaError::InvalidHost { .. }
            | CaError::InvalidValidity { .. } => false,
        }
    }
}

/// Key algorithm for keys this CA generates (its own key, the TLS server key).
///
/// Parses from and displays as `rsa2048`, `rsa3072`, `rsa4096`, `ecdsa-p256`, `ecdsa-p384`
/// (also the serde form). The default is [`KeyAlgorithm::Rsa2048`], which every Windows version
/// accepts in a chain.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum KeyAlgorithm {
    /// RSA 2048-bit, signatures RSA PKCS#1 v1.5 SHA-256.
    #[default]
    #[serde(rename = "rsa2048")]
    Rsa2048,
    /// RSA 3072-bit, signatures RSA PKCS#1 v1.5 SHA-256.
    #[serde(rename = "rsa3072")]
    Rsa3072,
    /// RSA 4096-bit, signatures RSA PKCS#1 v1.5 SHA-256.
    #[serde(rename = "rsa4096")]
    Rsa4096,
    /// ECDSA on P-256, signatures ECDSA-SHA256.
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// ECDSA on P-384, signatures ECDSA-SHA384.
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
}

impl KeyAlgorithm {
    /// All variants, in declaration order.
    pub const ALL: [KeyAlgorithm; 5] = [
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
    ];

    /// The configuration name (`rsa2048`, …, `ecdsa-p256`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa2048 => "rsa2048",
            KeyAlgorithm::Rsa3072 => "rsa3072",
            KeyAlgorithm::Rsa4096 => "rsa4096",
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
        }
    }

    /// Generates a fresh key pair of this algorithm.
    pub fn generate_key(self) -> Result<rcgen::KeyPair, rcgen::Error> {
        use rcgen::PKCS_RSA_SHA256 as RSA;
        use rcgen::{KeyPair, RsaKeySize, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384};
        match self {
            KeyAlgorithm::Rsa2048 => KeyPair::generate_rsa_for(&RSA, RsaKeySize::_2048),
            KeyAlgorithm::Rsa3072 => KeyPair::generate_rsa_for(&RSA, RsaKeySize::_3072),
            KeyAlgorithm::Rsa4096 => KeyPair::generate_rsa_for(&RSA, RsaKeySize::_4096),
            KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
            KeyAlgorithm::EcdsaP384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
        }
    }

    /// `true` for the RSA variants.
    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096
        )
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// [`KeyAlgorithm::from_str`] failed: the name is not one of the accepted ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key algorithm {input:?} (expected rsa2048, rsa3072, rsa4096, ecdsa-p256 or ecdsa-p384)")]
pub struct ParseKeyAlgorithmError {
    /// The rejected input.
    pub input: String,
}

impl FromStr for KeyAlgorithm {
    type Err = ParseKeyAlgorithmError;

    /// Case-insensitive; `_` is accepted in place of `-`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        KeyAlgorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == norm)
            .ok_or_else(|| ParseKeyAlgorithmError {
                input: s.to_owned(),
            })
    }
}

/// Upper-case hex SHA-1 of `der`: the certificate thumbprint Windows uses (provisioning document
/// `CertificateStore` characteristic names, `certutil`, the Certificates MMC).
pub fn thumbprint(der: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    hex_upper(d.as_ref())
}

pub(crate) fn hex_upper(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[usize::from(b >> 4)] as char);
        s.push(H[usize::from(b & 0xf)] as char);
    }
    s
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    hex_upper(bytes).to_ascii_lowercase()
}

/// Checks that `device_id` can be written as `CN=<device_id>` and matched by Windows'
/// `SSLCLIENTCERTSEARCHCRITERIA=Subject=CN%3D<device_id>`.
pub(crate) fn check_device_id(device_id: &str) -> Result<(), CaError> {
    let fail = |reason| {
        Err(CaError::InvalidDeviceId {
            device_id: device_id.chars().take(80).collect(),
            reason,
        })
    };
    if device_id.is_empty() {
        return fail("empty");
    }
    if device_id.len() > MAX_DEVICE_ID_LEN {
        return fail("longer than 64 characters");
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '{' | '}' | '@');
    if !device_id.chars().all(ok) {
        return fail("characters outside A-Z a-z 0-9 - _ . { } @");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_algorithm_names_round_trip() {
        for a in KeyAlgorithm::ALL {
            assert_eq!(a.as_str().parse::<KeyAlgorithm>(), Ok(a));
            assert_eq!(a.to_string(), a.as_str());
        }
        assert_eq!(
            "ECDSA_P256".parse::<KeyAlgorithm>(),
            Ok(KeyAlgorithm::EcdsaP256)
        );
        assert!("rsa1024".parse::<KeyAlgorithm>().is_err());
        assert_eq!(KeyAlgorithm::default(), KeyAlgorithm::Rsa2048);
    }

    #[test]
    fn key_algorithm_serde_names() {
        let v: Vec<KeyAlgorithm> = serde_json::from_str(r#"["rsa2048","ecdsa-p256"]"#).unwrap();
        assert_eq!(v, [KeyAlgorithm::Rsa2048, KeyAlgorithm::EcdsaP256]);
        assert_eq!(
            serde_json::to_string(&KeyAlgorithm::Rsa4096).unwrap(),
            "\"rsa4096\""
        );
    }

    #[test]
    fn thumbprint_is_upper_hex_sha1() {
        assert_eq!(
            thumbprint(b"abc"),
            "A9993E364706816ABA3E25717850C26C9CD0D89D"
        );
        assert_eq!(hex_lower(&[0x0a, 0xff]), "0aff");
    }

    #[test]
    fn device_id_charset() {
        assert!(check_device_id("1E08C6E95D8BB843B1278FF45BC60CC6").is_ok());
        assert!(check_device_id("{0b7f-aa}.x_y@corp").is_ok());
        assert!(check_device_id("").is_err());
        assert!(check_device_id(&"A".repeat(65)).is_err());
        for bad in ["a,b", "a=b", "a b", "a\0", "é", "a+b", "a;b"] {
            assert!(
                matches!(check_device_id(bad), Err(CaError::InvalidDeviceId { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn peer_fault_split() {
        assert!(CaError::CsrSignatureInvalid.is_peer_fault());
        assert!(CaError::KeyTooSmall {
            bits: 1024,
            min: 2048
        }
        .is_peer_fault());
        assert!(!CaError::Sign { reason: "x".into() }.is_peer_fault());
        assert!(!CaError::Load { reason: "x".into() }.is_peer_fault());
    }
}
