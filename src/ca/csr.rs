//! PKCS#10 (RFC 2986) request checks: the only maker of [`CsrVerified`].
//!
//! rcgen's own CSR parser refuses what Windows sends (a SHA-1 signature under the OIW OID
//! `1.3.14.3.2.29`, an unknown requested extension), so the request is parsed with x509-parser
//! and the signature is checked here with aws-lc-rs over the raw `CertificationRequestInfo`
//! bytes, with an explicit algorithm allow-list (see the [module docs](super)).

use aws_lc_rs::signature::{self, VerificationAlgorithm};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_HASH_SHA1, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_HASH_SHA256,
    OID_NIST_HASH_SHA384, OID_NIST_HASH_SHA512, OID_PKCS1_RSAENCRYPTION, OID_PKCS1_RSASSAPSS,
    OID_PKCS1_SHA1WITHRSA, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA,
    OID_PKCS1_SHA512WITHRSA, OID_SHA1_WITH_RSA, OID_SIG_ECDSA_WITH_SHA256,
    OID_SIG_ECDSA_WITH_SHA384,
};
use x509_parser::prelude::FromDer;
use x509_parser::signature_algorithm::RsaSsaPssParams;

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

/// x509-parser does not check the tag of the signature algorithm's OID (an `ObjectDescriptor`
/// parses as the same algorithm); the bytes are outside the signed data, so check them here:
/// the outer SEQUENCE's header, the CertificationRequestInfo, then `30 xx 06`.
fn algorithm_identifier_tags_ok(der: &[u8], cri_len: usize) -> bool {
    let header_len = |b: &[u8]| -> Option<usize> {
        let l = *b.get(1)?;
        Some(if l < 0x80 {
            2
        } else {
            2 + usize::from(l & 0x7f)
        })
    };
    let Some(outer) = header_len(der) else {
        return false;
    };
    let Some(alg) = outer.checked_add(cri_len).and_then(|at| der.get(at..)) else {
        return false;
    };
    let Some(inner) = header_len(alg) else {
        return false;
    };
    alg.first() == Some(&0x30) && alg.get(inner) == Some(&0x06)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
}

impl KeyKind {
    fn name(self) -> &'static str {
        match self {
            KeyKind::Rsa => "RSA",
            KeyKind::EcP256 => "EC-P256",
            KeyKind::EcP384 => "EC-P384",
        }
    }
}

struct KeyInfo {
    kind: KeyKind,
    bits: usize,
}

/// Largest RSA modulus aws-lc-rs verifies with.
const MAX_RSA_BITS: usize = 8192;

fn check_key(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
    min_rsa_bits: usize,
) -> Result<KeyInfo, CaError> {
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa_modulus_bits(rsa.modulus),
            _ => 0,
        };
        if bits == 0 {
            return Err(CaError::CsrMalformed {
                reason: "undecodable RSA public key".into(),
            });
        }
        if bits < min_rsa_bits {
            return Err(CaError::KeyTooSmall {
                bits,
                min: min_rsa_bits,
            });
        }
        if bits > MAX_RSA_BITS {
            return Err(CaError::KeyAlgorithmUnsupported {
                oid: format!("{alg} ({bits}-bit RSA, more than {MAX_RSA_BITS})"),
            });
        }
        Ok(KeyInfo {
            kind: KeyKind::Rsa,
            bits,
        })
    } else if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(|| CaError::CsrMalformed {
                reason: "EC key without a named curve".into(),
            })?;
        let (kind, bits) = if curve == OID_EC_P256 {
            (KeyKind::EcP256, 256)
        } else if curve == OID_NIST_EC_P384 {
            (KeyKind::EcP384, 384)
        } else {
            return Err(CaError::KeyAlgorithmUnsupported {
                oid: curve.to_id_string(),
            });
        };
        Ok(KeyInfo { kind, bits })
    } else {
        Err(CaError::KeyAlgorithmUnsupported {
            oid: alg.to_id_string(),
        })
    }
}

/// Exact bit length of a big-endian unsigned modulus (leading zero bytes ignored).
fn rsa_modulus_bits(modulus: &[u8]) -> usize {
    let Some(start) = modulus.iter().position(|&b| b != 0) else {
        return 0;
    };
    let m = &modulus[start..];
    (m.len() - 1) * 8 + (8 - m[0].leading_zeros() as usize)
}

type Verifier = &'static dyn VerificationAlgorithm;

/// Maps (signature algorithm, key) to an aws-lc-rs verifier and the Windows name.
fn pick_verifier(
    sig: &x509_parser::x509::AlgorithmIdentifier<'_>,
    key: &KeyInfo,
) -> Result<(Verifier, &'static str), CaError> {
    let oid = &sig.algorithm;
    let unsupported = |why: &str| CaError::CsrAlgorithmUnsupported {
        oid: if why.is_empty() {
            oid.to_id_string()
        } else {
            format!("{} ({why})", oid.to_id_string())
        },
    };
    let rsa = key.kind == KeyKind::Rsa;
    // RFC 4055 §5 / RFC 5758 §3.2: PKCS#1 v1.5 parameters are NULL (absence tolerated),
    // ECDSA parameters are absent.
    let null_or_absent = match &sig.parameters {
        None => true,
        Some(p) => p.tag() == x509_parser::der_parser::der::Tag::Null && p.data.is_empty(),
    };
    let is_pss = *oid == OID_PKCS1_RSASSAPSS;
    let is_ecdsa = *oid == OID_SIG_ECDSA_WITH_SHA256 || *oid == OID_SIG_ECDSA_WITH_SHA384;
    if (is_ecdsa && sig.parameters.is_some()) || (!is_pss && !is_ecdsa && !null_or_absent) {
        return Err(unsupported("unexpected parameters"));
    }
    let big = key.bits >= 2048;
    if *oid == OID_PKCS1_SHA1WITHRSA || *oid == OID_SHA1_WITH_RSA {
        require(rsa)?;
        Ok((
            &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
            "sha1RSA",
        ))
    } else if *oid == OID_PKCS1_SHA256WITHRSA {
        require(rsa)?;
        let v: Verifier = if big {
            &signature::RSA_PKCS1_2048_8192_SHA256
        } else {
            &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY
        };
        Ok((v, "sha256RSA"))
    } else if *oid == OID_PKCS1_SHA384WITHRSA {
        require(rsa)?;
        if !big {
            return Err(unsupported("SHA-384 with RSA below 2048 bits"));
        }
        Ok((&signature::RSA_PKCS1_2048_8192_SHA384, "sha384RSA"))
    } else if *oid == OID_PKCS1_SHA512WITHRSA {
        require(rsa)?;
        let v: Verifier = if big {
            &signature::RSA_PKCS1_2048_8192_SHA512
        } else {
            &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY
        };
        Ok((v, "sha512RSA"))
    } else if *oid == OID_PKCS1_RSASSAPSS {
        require(rsa)?;
        if !big {
            return Err(unsupported("RSASSA-PSS with RSA below 2048 bits"));
        }
        let params = sig
            .parameters
            .as_ref()
            .and_then(|p| RsaSsaPssParams::try_from(p).ok())
            .ok_or_else(|| unsupported("missing or malformed RSASSA-PSS parameters"))?;
        let hash = params.hash_algorithm_oid().clone();
        let (v, name, hash_len): (Verifier, _, u32) = if hash == OID_NIST_HASH_SHA256 {
            (
                &signature::RSA_PSS_2048_8192_SHA256,
                "RSASSA-PSS-SHA256",
                32,
            )
        } else if hash == OID_NIST_HASH_SHA384 {
            (
                &signature::RSA_PSS_2048_8192_SHA384,
                "RSASSA-PSS-SHA384",
                48,
            )
        } else if hash == OID_NIST_HASH_SHA512 {
            (
                &signature::RSA_PSS_2048_8192_SHA512,
                "RSASSA-PSS-SHA512",
                64,
            )
        } else if hash == OID_HASH_SHA1 {
            return Err(unsupported("RSASSA-PSS with SHA-1"));
        } else {
            return Err(unsupported("RSASSA-PSS hash"));
        };
        let mgf_ok = params
            .mask_gen_algorithm()
            .map(|m| m.mgf.as_bytes() == MGF1_DER && m.hash == hash)
            .unwrap_or(false);
        if !mgf_ok {
            return Err(unsupported(
                "RSASSA-PSS mask generation is not MGF1 with the same hash",
            ));
        }
        if params.salt_length() != hash_len {
            return Err(unsupported(
                "RSASSA-PSS salt length differs from the hash length",
            ));
        }
        if params.trailer_field() != 1 {
            return Err(unsupported("RSASSA-PSS trailer field"));
        }
        Ok((v, name))
    } else if *oid == OID_SIG_ECDSA_WITH_SHA256 {
        match key.kind {
            KeyKind::EcP256 => Ok((&signature::ECDSA_P256_SHA256_ASN1, "sha256ECDSA")),
            KeyKind::EcP384 => Ok((&signature::ECDSA_P384_SHA256_ASN1, "sha256ECDSA")),
            KeyKind::Rsa => Err(CaError::CsrSignatureInvalid),
        }
    } else if *oid == OID_SIG_ECDSA_WITH_SHA384 {
        match key.kind {
            KeyKind::EcP256 => Ok((&signature::ECDSA_P256_SHA384_ASN1, "sha384ECDSA")),
            KeyKind::EcP384 => Ok((&signature::ECDSA_P384_SHA384_ASN1, "sha384ECDSA")),
            KeyKind::Rsa => Err(CaError::CsrSignatureInvalid),
        }
    } else {
        Err(unsupported(""))
    }
}

/// DER content of `id-mgf1` (1.2.840.113549.1.1.8).
const MGF1_DER: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];

/// A signature algorithm for the wrong key type cannot be a valid signature by that key.
fn require(ok: bool) -> Result<(), CaError> {
    if ok {
        Ok(())
    } else {
        Err(CaError::CsrSignatureInvalid)
    }
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
    fn modulus_bits() {
        assert_eq!(rsa_modulus_bits(&[0x00, 0x80, 0, 0]), 24);
        assert_eq!(rsa_modulus_bits(&[0x01, 0xff]), 9);
        assert_eq!(rsa_modulus_bits(&[0, 0]), 0);
        assert_eq!(rsa_modulus_bits(&[]), 0);
    }

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
