//! PKCS#10 (RFC 2986) request checks: the only maker of [`CsrVerified`].
//!
//! rcgen's own CSR parser refuses what Windows sends (a SHA-1 signature under the OIW OID
//! `1.3.14.3.2.29`, an unknown requested extension), so the request is parsed with x509-parser
//! and the signature is checked here with aws-lc-rs over the raw `CertificationRequestInfo`
//! bytes, with an explicit algorithm allow-list (see the [module docs](super)).

use aws_lc_rs::signature;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::prelude::FromDer;

use super::sigalg::{algorithm_identifier_tags_ok, check_key, pick_verifier};
use super::{CaError, ABSOLUTE_MIN_RSA_BITS};

/// Largest CSR we look at. Windows sends about 720 bytes; an RSA-8192 request with a few
/// extensions stays far below this.
pub const MAX_CSR_LEN: usize = 16 * 1024;

/// DER content of the OID `1.3.6.1.4.1.311.66.1.0`, the Windows enrollment extension that
/// carries the DeviceID.
const OID_MS_DEVICE_ID_DER: &[u8] = &[0x2b, 6, 1, 4, 1, 0x82, 0x37, 0x42, 1, 0];

/// Longest DeviceID extension value kept (Windows: 32 hex characters and a NUL).
const MAX_DEVICE_ID_EXT_LEN: usize = 256;

/// Proof that a PKCS#10 request was parsed and its signature verified with the key it
/// carries (proof of possession), and that the key is acceptable.
///
/// Only [`verify_csr`] makes one (the fields are private); [`Ca::issue_device_cert`](super::Ca)
/// takes one, so a certificate cannot be issued for an unchecked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrVerified {
    spki_der: Vec<u8>,
    /// The same key as rcgen re-encodes it; checked equal to `spki_der` by [`verify_csr`].
    rcgen_key: rcgen::SubjectPublicKeyInfo,
    key_bits: usize,
    key_algorithm: &'static str,
    device_id_ext: Option<String>,
    subject_cn: Option<String>,
    signature_alg: &'static str,
}

impl CsrVerified {
    /// The request's DER `SubjectPublicKeyInfo`, exactly as the device sent it. The issued
    /// certificate carries these bytes unchanged.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The key as rcgen takes it for signing.
    pub(super) fn rcgen_key(&self) -> &rcgen::SubjectPublicKeyInfo {
        &self.rcgen_key
    }

    /// Key size in bits: RSA modulus length, or the curve size (256, 384) for EC keys.
    pub fn key_bits(&self) -> usize {
        self.key_bits
    }

    /// `"RSA"`, `"EC-P256"` or `"EC-P384"`.
    pub fn key_algorithm(&self) -> &'static str {
        self.key_algorithm
    }

    /// The DeviceID from requested extension `1.3.6.1.4.1.311.66.1.0`, with the trailing NUL
    /// removed; `None` when the extension is absent (non-Windows clients).
    pub fn device_id_ext(&self) -> Option<&str> {
        self.device_id_ext.as_deref()
    }

    /// The request's subject CN as sent (lossy UTF-8, may contain `!` and NUL). For logging
    /// only: it is client-chosen and never copied into a certificate.
    pub fn subject_cn(&self) -> Option<&str> {
        self.subject_cn.as_deref()
    }

    /// Signature algorithm, named as Windows names them: `sha1RSA`, `sha256RSA`, `sha384RSA`,
    /// `sha512RSA`, `RSASSA-PSS-SHA256` (…384, …512), `sha256ECDSA`, `sha384ECDSA`.
    pub fn signature_alg(&self) -> &'static str {
        self.signature_alg
    }
}

/// Parses a DER PKCS#10 request, checks its key, and verifies its signature with that key.
///
/// * RSA keys shorter than `min_rsa_bits` are refused with [`CaError::KeyTooSmall`]
///   (`min_rsa_bits` below [`ABSOLUTE_MIN_RSA_BITS`] is raised to it); EC keys must be on
///   P-256 or P-384, with an SPKI encoding that rcgen reproduces byte for byte
///   ([`CaError::KeyAlgorithmUnsupported`] otherwise).
/// * The signature must verify ([`CaError::CsrSignatureInvalid`]); SHA-1 RSA is accepted, as
///   Windows signs its request with it ([`CaError::CsrAlgorithmUnsupported`] for algorithms
///   outside the list in the module docs).
/// * Anything that is not exactly one well-formed request (empty, truncated, trailing bytes,
///   version ≠ 1, more than [`MAX_CSR_LEN`] bytes, an unreadable DeviceID extension) is
///   [`CaError::CsrMalformed`].
///
/// Never panics, whatever the input.
pub fn verify_csr(der: &[u8], min_rsa_bits: usize) -> Result<CsrVerified, CaError> {
    let malformed = |reason: String| CaError::CsrMalformed { reason };
    if der.is_empty() {
        return Err(malformed("empty".into()));
    }
    if der.len() > MAX_CSR_LEN {
        return Err(malformed(format!(
            "{} bytes, more than {MAX_CSR_LEN}",
            der.len()
        )));
    }
    let (rest, req) =
        X509CertificationRequest::from_der(der).map_err(|e| malformed(format!("DER: {e}")))?;
    if !rest.is_empty() {
        return Err(malformed(format!(
            "{} trailing bytes after the request",
            rest.len()
        )));
    }
    let cri = &req.certification_request_info;
    if cri.version.0 != 0 {
        return Err(malformed(format!(
            "version {} (only v1 = 0 exists)",
            cri.version.0
        )));
    }

    if !algorithm_identifier_tags_ok(der, cri.raw.len()) {
        return Err(malformed(
            "signatureAlgorithm is not SEQUENCE { OID, … }".into(),
        ));
    }

    let key = check_key(&cri.subject_pki, min_rsa_bits.max(ABSOLUTE_MIN_RSA_BITS))?;
    let (alg, signature_alg) = pick_verifier(&req.signature_algorithm, &key)?;
    if req.signature_value.unused_bits != 0 {
        return Err(CaError::CsrSignatureInvalid);
    }
    signature::UnparsedPublicKey::new(alg, &cri.subject_pki.subject_public_key.data[..])
        .verify(cri.raw, &req.signature_value.data)
        .map_err(|_| CaError::CsrSignatureInvalid)?;

    // rcgen writes the certificate's SPKI from (algorithm, key bits); make sure that gives back
    // the request's bytes, so the certificate certifies exactly the requested key.
    let spki_der = cri.subject_pki.raw.to_vec();
    let not_reproducible = || CaError::KeyAlgorithmUnsupported {
        oid: format!(
            "{} (encoding not reproducible)",
            cri.subject_pki.algorithm.algorithm.to_id_string()
        ),
    };
    let rcgen_key =
        rcgen::SubjectPublicKeyInfo::from_der(&spki_der).map_err(|_| not_reproducible())?;
    if rcgen::PublicKeyData::subject_public_key_info(&rcgen_key) != spki_der {
        return Err(not_reproducible());
    }

    Ok(CsrVerified {
        spki_der,
        rcgen_key,
        key_bits: key.bits,
        key_algorithm: key.kind.name(),
        device_id_ext: device_id_extension(&req)?,
        subject_cn: subject_cn(&req),
        signature_alg,
    })
}

/// Reads requested extension `1.3.6.1.4.1.311.66.1.0` (DeviceID, ASCII, NUL-terminated).
fn device_id_extension(req: &X509CertificationRequest<'_>) -> Result<Option<String>, CaError> {
    let malformed = |reason: &str| CaError::CsrMalformed {
        reason: format!("DeviceID extension 1.3.6.1.4.1.311.66.1.0: {reason}"),
    };
    let mut found: Option<&[u8]> = None;
    for attr in req.certification_request_info.iter_attributes() {
        let ParsedCriAttribute::ExtensionRequest(er) = attr.parsed_attribute() else {
            continue;
        };
        for ext in &er.extensions {
            if ext.oid.as_bytes() == OID_MS_DEVICE_ID_DER {
                if found.is_some() {
                    return Err(malformed("present twice"));
                }
                found = Some(ext.value);
            }
        }
    }
    let Some(raw) = found else {
        return Ok(None);
    };
    if raw.len() > MAX_DEVICE_ID_EXT_LEN {
        return Err(malformed("too long"));
    }
    let text = decode_device_id(raw).ok_or_else(|| malformed("not printable ASCII"))?;
    if text.is_empty() {
        return Err(malformed("empty"));
    }
    Ok(Some(text))
}

/// Windows writes ASCII followed by one NUL. UTF-16LE (every odd byte zero) is accepted too,
/// defensively. Trailing NULs are dropped; anything else outside `!`..=`~` is refused.
fn decode_device_id(raw: &[u8]) -> Option<String> {
    let is_utf16le = raw.len() >= 2
        && raw.len().is_multiple_of(2)
        && raw.iter().skip(1).step_by(2).all(|&b| b == 0)
        && raw.iter().step_by(2).any(|&b| b != 0);
    let bytes: Vec<u8> = if is_utf16le {
        raw.iter().step_by(2).copied().collect()
    } else {
        raw.to_vec()
    };
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let text = &bytes[..end];
    if text.iter().all(|b| b.is_ascii_graphic()) {
        Some(String::from_utf8_lossy(text).into_owned())
    } else {
        None
    }
}

fn subject_cn(req: &X509CertificationRequest<'_>) -> Option<String> {
    let cn = req
        .certification_request_info
        .subject
        .iter_common_name()
        .next()?;
    let data = cn.attr_value().data;
    let data = &data[..data.len().min(256)];
    Some(String::from_utf8_lossy(data).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_decoding() {
        assert_eq!(decode_device_id(b"ABC\0").as_deref(), Some("ABC"));
        assert_eq!(decode_device_id(b"ABC").as_deref(), Some("ABC"));
        assert_eq!(decode_device_id(b"A\0B\0C\0\0\0").as_deref(), Some("ABC"));
        assert_eq!(decode_device_id(b"A B\0"), None);
        assert_eq!(decode_device_id(b"A\0B"), None);
        assert_eq!(decode_device_id(b"\0").as_deref(), Some(""));
    }

    #[test]
    fn never_panics_on_small_inputs() {
        for len in 0..64u8 {
            let v: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37) ^ 0x30).collect();
            assert!(verify_csr(&v, 2048).is_err());
        }
        assert!(matches!(
            verify_csr(&[0x30; MAX_CSR_LEN + 1], 2048),
            Err(CaError::CsrMalformed { .. })
        ));
    }
}
