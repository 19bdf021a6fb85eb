//! Reading the device binding (`CN=<DeviceID>`) back out of a client certificate.

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use super::{hex_lower, thumbprint, Ca, CaError};

/// What a device certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// The DeviceID: the subject's single common name.
    pub device_id: String,
    /// Serial number, lower-case hex without colons or sign byte (as
    /// [`IssuedCert::serial_hex`](super::IssuedCert::serial_hex)).
    pub serial_hex: String,
    /// Upper-case hex SHA-1 of the certificate.
    pub thumbprint: String,
    /// NotBefore.
    pub not_before: OffsetDateTime,
    /// NotAfter.
    pub not_after: OffsetDateTime,
}

/// Parses a DER certificate and returns its device binding. Does **not** check who issued it
/// or when it is valid: the TLS layer has done that, or use [`Ca::authenticate_device_cert`].
///
/// [`CaError::CertMalformed`] unless the subject has exactly one CN and it is a usable
/// DeviceID (same rules as issuance).
pub fn device_id_from_cert(der: &[u8]) -> Result<CertIdentity, CaError> {
    let (rest, cert) = parse(der)?;
    if !rest.is_empty() {
        return Err(malformed("trailing bytes after the certificate".into()));
    }
    identity(&cert, der)
}

fn parse(der: &[u8]) -> Result<(&[u8], X509Certificate<'_>), CaError> {
    X509Certificate::from_der(der).map_err(|e| malformed(format!("DER: {e}")))
}

fn malformed(reason: String) -> CaError {
    CaError::CertMalformed { reason }
}

fn identity(cert: &X509Certificate<'_>, der: &[u8]) -> Result<CertIdentity, CaError> {
    let mut cns = cert.subject().iter_common_name();
    let cn = cns
        .next()
        .ok_or_else(|| malformed("no subject common name".into()))?;
    if cns.next().is_some() {
        return Err(malformed("more than one subject common name".into()));
    }
    let device_id = cn
        .as_str()
        .map_err(|_| malformed("subject common name is not a text string".into()))?;
    super::check_device_id(device_id).map_err(|e| malformed(e.to_string()))?;
    let raw = cert.raw_serial();
    let start = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    Ok(CertIdentity {
        device_id: device_id.to_owned(),
        serial_hex: hex_lower(&raw[start..]),
        thumbprint: thumbprint(der),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
    })
}

impl Ca {
    /// Checks that `der` is a device certificate issued by this CA and valid at `now`, and
    /// returns its binding: issuer name equal to the CA subject, signature by the CA key (checked
    /// once per distinct certificate, see `verified`), `now` within its validity, CA:FALSE, and
    /// EKU clientAuth. Revocation (by serial) is the caller's business.
    ///
    /// [`CaError::CertMalformed`] for an unparsable certificate or a missing binding,
    /// [`CaError::CertRejected`] for a failed check.
    pub fn authenticate_device_cert(
        &self,
        der: &[u8],
        now: OffsetDateTime,
    ) -> Result<CertIdentity, CaError> {
        let reject = |reason: &str| CaError::CertRejected {
            reason: reason.to_owned(),
        };
        let (rest, cert) = parse(der)?;
        if !rest.is_empty() {
            return Err(malformed("trailing bytes after the certificate".into()));
        }
        let ca = self.issuer_cert()?;
        if cert.issuer().as_raw() != ca.subject().as_raw() {
            return Err(reject("not issued by this CA (issuer name)"));
        }
        // The signature of bytes already verified is not checked again (`verified`).
        let digest = super::verified::digest(der);
        if !self.verified.contains(&digest) {
            cert.verify_signature(Some(ca.public_key()))
                .map_err(|_| reject("signature does not verify with the CA key"))?;
            self.verified.insert(digest);
        }
        let v = cert.validity();
        if now < v.not_before.to_datetime() {
            return Err(reject("not yet valid"));
        }
        if now > v.not_after.to_datetime() {
            return Err(reject("expired"));
        }
        let mut client_auth = false;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::BasicConstraints(bc) if bc.ca => {
                    return Err(reject("is a CA certificate"))
                }
                ParsedExtension::ExtendedKeyUsage(eku) => client_auth |= eku.client_auth,
                _ => {}
            }
        }
        if !client_auth {
            return Err(reject("no clientAuth extended key usage"));
        }
        identity(&cert, der)
    }
}
