//! Message signatures of the Windows DM client (`DMClient/Provider/<ID>/RequireMessageSigning`):
//! a detached CMS `SignedData` (RFC 5652) over the SyncML request body, made with the device's
//! MDM identity certificate, for deployments where a TLS-terminating load balancer hides the
//! client certificate.
//!
//! # What Microsoft documents
//!
//! * The DMClient CSP reference (`RequireMessageSigning`): "Primarily used for SSL bridging
//!   mode … When enabled, every SyncML message from the device will carry an additional HTTP
//!   header named **MDM-Signature**. This header contains BASE64-encoded Cryptographic Message
//!   Syntax using a Detached Signature of the complete SyncML message SHA-2 (inclusive of the
//!   SyncHdr and SyncBody). Signing is performed using the private key of the management
//!   session certificate that was enrolled as part of the enrollment process. The device public
//!   key and PKCS9 UTC signing time stamp are included in the authenticated attributes in the
//!   signature." The server should validate the signature and the timestamp with the enrolled
//!   identity certificate and check that certificate and time are valid.
//! * An MS-MDM protocol note is reported to name the header **MS-Signature** instead. We could
//!   not find that text in the reference material available to us, so both names are listed in
//!   [`SIGNATURE_HEADER_NAMES`] and the caller should accept either.
//!
//! Where the sources are vague or disagree, this module decides:
//!
//! * "SHA-2" in the CSP text, yet older Windows builds are known to sign with SHA-1: SHA-1 is
//!   accepted as the digest (and in sha1WithRSAEncryption), like [`verify_csr`](super::verify_csr)
//!   accepts it for proof of possession. SHA-256/384/512 are accepted too.
//! * "The device public key … in the authenticated attributes" is not a standard CMS attribute
//!   and would not tell us which certificate to trust; we require the signer's certificate in
//!   the `SignedData` `certificates` field (what CMS signers, Windows' `CryptMsg` included, put
//!   there by default) and otherwise fail with [`CaError::CmsSignerCertMissing`].
//! * The PKCS#9 `signingTime` attribute is covered by the signature but **not** checked against
//!   `now`: the device clock is not trustworthy enough to reject on, and replay within a session
//!   is bounded by the SyncML SessionID/MsgID the caller tracks. The certificate's validity is
//!   checked at the server's `now`.
//!
//! # What is checked
//!
//! `ContentInfo` of type signedData; `SignedData` without `eContent` (detached) and with
//! eContentType id-data; exactly one `SignerInfo`; its signer identified by
//! issuerAndSerialNumber or subjectKeyIdentifier and found in `certificates`; that certificate
//! accepted by [`Ca::authenticate_device_cert`] (issued by this CA, valid at `now`, clientAuth,
//! CA:FALSE), which also gives the returned [`CertIdentity`]. With signed attributes:
//! exactly one contentType (id-data) and one messageDigest, which must equal the digest of the
//! content under the SignerInfo's digestAlgorithm, and the signature covers the attributes'
//! DER re-tagged as SET OF (RFC 5652 §5.4). Without signed attributes the signature covers the
//! content itself. Signature algorithms: those of the CSR allow-list (RSA PKCS#1 v1.5 with
//! SHA-1/256/384/512, RSASSA-PSS with SHA-256/384/512, ECDSA P-256/P-384 with SHA-256/384),
//! plus the CMS habit of naming the algorithm by its key type (`rsaEncryption`,
//! `id-ecPublicKey`), in which case the hash is the digestAlgorithm. The digestAlgorithm and
//! the hash named in the signature algorithm are not required to agree (both are allow-listed).
//! Revocation (by [`CertIdentity::serial_hex`]) is the caller's business.

use std::borrow::Cow;

use aws_lc_rs::digest;
use aws_lc_rs::signature::UnparsedPublicKey;
use base64::Engine as _;
use x509_parser::der_parser::oid::Oid;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::AlgorithmIdentifier;

use super::renew::{digest_for, tlv, Tlv, OID_MESSAGE_DIGEST, OID_RSA, OID_SIGNED_DATA};
use super::sigalg::{check_key, pick_verifier};
use super::{Ca, CaError, CertIdentity, ABSOLUTE_MIN_RSA_BITS};

/// Largest DER signature accepted (64 KiB); Windows' are a few KiB (one certificate).
pub const MAX_SIGNATURE_LEN: usize = 64 * 1024;

/// HTTP request headers that may carry the signature: `MDM-Signature` (DMClient CSP docs)
/// and `MS-Signature` (reported in an MS-MDM note). Header names are case-insensitive.
pub const SIGNATURE_HEADER_NAMES: [&str; 2] = ["MDM-Signature", "MS-Signature"];

/// 1.2.840.113549.1.7.1 id-data.
const OID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
/// 1.2.840.113549.1.9.3 contentType.
const OID_CONTENT_TYPE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03];
/// 1.2.840.10045.2.1 id-ecPublicKey (some CMS signers name ECDSA signatures this way).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// AlgorithmIdentifier DER for shaNWithRSAEncryption (NULL parameters), N = 1/256/384/512.
const ALG_SHA1_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00,
];
const ALG_SHA256_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];
const ALG_SHA384_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c, 0x05, 0x00,
];
const ALG_SHA512_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d, 0x05, 0x00,
];
/// AlgorithmIdentifier DER for ecdsa-with-SHA256/384 (no parameters).
const ALG_ECDSA_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
const ALG_ECDSA_SHA384: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
];

fn malformed(reason: &str) -> CaError {
    CaError::CmsMalformed {
        reason: reason.to_owned(),
    }
}

/// Reads the next element, which must have `tag`.
fn take<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(Tlv<'a>, &'a [u8]), CaError> {
    match tlv(input) {
        Some((t, rest)) if t.tag == tag => Ok((t, rest)),
        Some(_) => Err(malformed(&format!("{what}: unexpected tag"))),
        None => Err(malformed(&format!("{what}: truncated or bad length"))),
    }
}

/// Reads the next element, which must have `tag` and be the last one in `input`.
fn take_last<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<Tlv<'a>, CaError> {
    let (t, rest) = take(input, tag, what)?;
    if !rest.is_empty() {
        return Err(malformed(&format!("trailing bytes after {what}")));
    }
    Ok(t)
}

fn oid_string(raw: &[u8]) -> String {
    Oid::new(Cow::Borrowed(raw)).to_id_string()
}

/// Verifies a detached CMS `SignedData` over `content`, made by the holder of a certificate
/// issued by `ca` that is valid at `now`, and returns that certificate's identity.
///
/// `signature_der` is the DER `ContentInfo` (at most [`MAX_SIGNATURE_LEN`] bytes); `content`
/// is the exact request body as received.
///
/// Checked: `ContentInfo` of type signedData; no `eContent` (detached) and eContentType
/// id-data; exactly one `SignerInfo`, its signer (issuerAndSerialNumber or
/// subjectKeyIdentifier) found in `certificates` and accepted by
/// [`Ca::authenticate_device_cert`] (issued by this CA, valid at `now`, clientAuth, CA:FALSE).
/// With signed attributes: exactly one contentType (id-data) and one messageDigest equal to the
/// digest of `content` under the digestAlgorithm (SHA-1, SHA-256/384/512; SHA-1 because older
/// Windows signs with it), and the signature covers the attributes re-tagged as SET OF; without
/// them, the signature covers `content`. Signature algorithms: RSA PKCS#1 v1.5 (also when named
/// `rsaEncryption`), RSASSA-PSS with SHA-256/384/512 (MGF1 same hash, salt = hash length),
/// ECDSA P-256/P-384 with SHA-256/384 (also when named `id-ecPublicKey`). The PKCS#9
/// signingTime attribute is not checked against `now` (device clocks drift); revocation is the
/// caller's business. Lengths must be definite (DER, as Windows' non-streamed `CryptMsg`
/// output and OpenSSL's `-outform DER` are); BER indefinite lengths are refused as malformed.
///
/// Errors, all peer faults ([`CaError::is_peer_fault`]):
/// [`CaError::CmsMalformed`] (structure, size, embedded content, not exactly one signer),
/// [`CaError::CmsAlgorithmUnsupported`], [`CaError::CmsSignerCertMissing`],
/// [`CaError::CertRejected`] / [`CaError::CertMalformed`] (from
/// [`Ca::authenticate_device_cert`]: not our certificate, expired, no clientAuth…), and
/// [`CaError::SignatureInvalid`] (content or signature altered, wrong key). Never panics.
pub fn verify_detached_signature(
    ca: &Ca,
    signature_der: &[u8],
    content: &[u8],
    now: time::OffsetDateTime,
) -> Result<CertIdentity, CaError> {
    if signature_der.len() > MAX_SIGNATURE_LEN {
        return Err(malformed("larger than 64 KiB"));
    }
    // ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT SignedData }
    let ci = take_last(signature_der, 0x30, "ContentInfo")?;
    let (ct, rest) = take(ci.content, 0x06, "contentType")?;
    if ct.content != OID_SIGNED_DATA {
        return Err(malformed("contentType is not signedData"));
    }
    let explicit = take_last(rest, 0xa0, "ContentInfo content")?;
    let sd = take_last(explicit.content, 0x30, "SignedData")?;

    // SignedData ::= SEQUENCE { version, digestAlgorithms SET, encapContentInfo,
    //   certificates [0] IMPLICIT OPTIONAL, crls [1] IMPLICIT OPTIONAL, signerInfos SET }
    let (version, rest) = take(sd.content, 0x02, "SignedData version")?;
    if !matches!(version.content, [1] | [3] | [4] | [5]) {
        return Err(malformed("SignedData version"));
    }
    let (_, rest) = take(rest, 0x31, "digestAlgorithms")?;
    let (eci, mut rest) = take(rest, 0x30, "encapContentInfo")?;
    let (ect, eci_rest) = take(eci.content, 0x06, "eContentType")?;
    if !eci_rest.is_empty() {
        return Err(malformed(
            "content is embedded (eContent present); expected a detached signature",
        ));
    }
    if ect.content != OID_DATA {
        return Err(malformed("eContentType is not id-data"));
    }
    let mut certs: Vec<&[u8]> = Vec::new();
    if let Some((t, r)) = tlv(rest).filter(|(t, _)| t.tag == 0xa0) {
        let mut c = t.content;
        while !c.is_empty() {
            let (cert, r2) = tlv(c).ok_or_else(|| malformed("certificates: bad element"))?;
            // Only plain X.509 certificates (SEQUENCE); other CertificateChoices are ignored.
            if cert.tag == 0x30 {
                certs.push(cert.whole);
            }
            c = r2;
        }
        rest = r;
    }
    if let Some((_, r)) = tlv(rest).filter(|(t, _)| t.tag == 0xa1) {
        rest = r;
    }
    let signer_infos = take_last(rest, 0x31, "signerInfos")?;
    let (si, more) = take(signer_infos.content, 0x30, "SignerInfo")?;
    if !more.is_empty() {
        return Err(malformed("more than one SignerInfo"));
    }

    // SignerInfo ::= SEQUENCE { version, sid, digestAlgorithm, signedAttrs [0] IMPLICIT
    //   OPTIONAL, signatureAlgorithm, signature OCTET STRING, unsignedAttrs [1] IMPLICIT OPTIONAL }
    let (si_version, r) = take(si.content, 0x02, "SignerInfo version")?;
    if !matches!(si_version.content, [1] | [3]) {
        return Err(malformed("SignerInfo version"));
    }
    let (sid, r) = tlv(r).ok_or_else(|| malformed("sid: truncated"))?;
    let (digest_alg, r) = take(r, 0x30, "digestAlgorithm")?;
    let (signed_attrs, r) = match tlv(r) {
        Some((t, r2)) if t.tag == 0xa0 => (Some(t), r2),
        _ => (None, r),
    };
    let (sig_alg, r) = take(r, 0x30, "signatureAlgorithm")?;
    let (sig, r) = take(r, 0x04, "signature")?;
    if !r.is_empty() {
        take_last(r, 0xa1, "unsignedAttrs")?;
    }

    let signer_der = find_signer(&certs, &sid)?;
    let identity = ca.authenticate_device_cert(signer_der, now)?;

    let (hash_oid, _) = take(digest_alg.content, 0x06, "digestAlgorithm OID")?;
    let hash = digest_for(hash_oid.content).map_err(|_| CaError::CmsAlgorithmUnsupported {
        oid: format!("{} (digest)", oid_string(hash_oid.content)),
    })?;
    let signed: Cow<'_, [u8]> = match &signed_attrs {
        Some(attrs) => {
            let md = check_signed_attrs(attrs.content)?;
            if md != digest::digest(hash, content).as_ref() {
                return Err(CaError::SignatureInvalid);
            }
            // RFC 5652 §5.4: the signature covers the DER of the attributes as a SET OF.
            let mut v = attrs.whole.to_vec();
            v[0] = 0x31;
            Cow::Owned(v)
        }
        None => Cow::Borrowed(content),
    };

    let (_, signer) =
        X509Certificate::from_der(signer_der).map_err(|_| CaError::CertMalformed {
            reason: "signer certificate".into(),
        })?;
    let spki = signer.public_key();
    let key = check_key(spki, ABSOLUTE_MIN_RSA_BITS).map_err(|e| match e {
        CaError::CsrMalformed { reason } => CaError::CertMalformed { reason },
        other => other,
    })?;
    let alg_der = signature_algorithm(sig_alg.whole, hash.output_len())?;
    let alg = match AlgorithmIdentifier::from_der(alg_der) {
        Ok((&[], alg)) => alg,
        _ => return Err(malformed("signatureAlgorithm")),
    };
    let (verifier, _name) = pick_verifier(&alg, &key).map_err(|e| match e {
        CaError::CsrAlgorithmUnsupported { oid } => CaError::CmsAlgorithmUnsupported { oid },
        _ => CaError::SignatureInvalid,
    })?;
    UnparsedPublicKey::new(verifier, &spki.subject_public_key.data[..])
        .verify(&signed, sig.content)
        .map_err(|_| CaError::SignatureInvalid)?;
    Ok(identity)
}

/// Decodes an `MDM-Signature` / `MS-Signature` header value (standard base64; whitespace and
/// missing padding tolerated) and calls [`verify_detached_signature`].
///
/// [`CaError::CmsMalformed`] when the value is empty, not base64, or decodes to more than
/// [`MAX_SIGNATURE_LEN`] bytes; otherwise the errors of [`verify_detached_signature`].
pub fn verify_signature_header(
    ca: &Ca,
    header_value: &str,
    content: &[u8],
    now: time::OffsetDateTime,
) -> Result<CertIdentity, CaError> {
    // Four base64 characters per three bytes; refuse before allocating for a huge header.
    let max_chars = MAX_SIGNATURE_LEN.div_ceil(3) * 4;
    let mut b64 = String::with_capacity(header_value.len().min(max_chars));
    for c in header_value.chars().filter(|c| !c.is_ascii_whitespace()) {
        if b64.len() >= max_chars {
            return Err(malformed("larger than 64 KiB"));
        }
        b64.push(c);
    }
    if b64.is_empty() {
        return Err(malformed("empty signature header"));
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let der = engine
        .decode(b64.as_bytes())
        .map_err(|_| malformed("signature header is not base64"))?;
    verify_detached_signature(ca, &der, content, now)
}

/// The certificate named by `sid`: issuerAndSerialNumber, or `[0]` subjectKeyIdentifier.
fn find_signer<'a>(certs: &[&'a [u8]], sid: &Tlv<'_>) -> Result<&'a [u8], CaError> {
    enum Sid<'s> {
        IssuerSerial(&'s [u8], &'s [u8]),
        KeyId(&'s [u8]),
    }
    let sid = match sid.tag {
        0x30 => {
            let (issuer, r) = take(sid.content, 0x30, "sid issuer")?;
            let serial = take_last(r, 0x02, "sid serial")?;
            Sid::IssuerSerial(issuer.whole, serial.content)
        }
        0x80 => Sid::KeyId(sid.content),
        _ => return Err(malformed("sid: unexpected tag")),
    };
    for der in certs {
        let Ok((_, c)) = X509Certificate::from_der(der) else {
            continue;
        };
        let hit = match sid {
            Sid::IssuerSerial(issuer, serial) => {
                c.issuer().as_raw() == issuer && c.raw_serial() == serial
            }
            Sid::KeyId(id) => c.extensions().iter().any(|e| {
                matches!(e.parsed_extension(),
                    ParsedExtension::SubjectKeyIdentifier(k) if k.0 == id)
            }),
        };
        if hit {
            return Ok(der);
        }
    }
    Err(CaError::CmsSignerCertMissing)
}

/// Checks the signed attributes (content of `[0]`): one contentType = id-data, one
/// messageDigest; returns the messageDigest value.
fn check_signed_attrs(attrs: &[u8]) -> Result<&[u8], CaError> {
    let mut content_type_seen = false;
    let mut md: Option<&[u8]> = None;
    let mut rest = attrs;
    while !rest.is_empty() {
        let (attr, r) = take(rest, 0x30, "signed attribute")?;
        rest = r;
        let (oid, values) = take(attr.content, 0x06, "attribute type")?;
        if oid.content == OID_CONTENT_TYPE {
            let set = take_last(values, 0x31, "contentType values")?;
            let value = take_last(set.content, 0x06, "contentType value")?;
            if content_type_seen {
                return Err(malformed("more than one contentType attribute"));
            }
            if value.content != OID_DATA {
                return Err(malformed("contentType attribute is not id-data"));
            }
            content_type_seen = true;
        } else if oid.content == OID_MESSAGE_DIGEST {
            let set = take_last(values, 0x31, "messageDigest values")?;
            let value = take_last(set.content, 0x04, "messageDigest value")?;
            if md.is_some() {
                return Err(malformed("more than one messageDigest attribute"));
            }
            md = Some(value.content);
        }
    }
    if !content_type_seen {
        return Err(malformed("signed attributes without contentType"));
    }
    md.ok_or_else(|| malformed("signed attributes without messageDigest"))
}

/// The signatureAlgorithm to look up in the allow-list: as sent, or, when it names only the key
/// type (`rsaEncryption`, `id-ecPublicKey`), the matching algorithm for the digest length.
fn signature_algorithm(alg_der: &[u8], hash_len: usize) -> Result<&[u8], CaError> {
    let (alg, _) = take(alg_der, 0x30, "signatureAlgorithm")?;
    let (oid, _) = take(alg.content, 0x06, "signatureAlgorithm OID")?;
    let mapped = if oid.content == OID_RSA {
        match hash_len {
            20 => ALG_SHA1_RSA,
            32 => ALG_SHA256_RSA,
            48 => ALG_SHA384_RSA,
            _ => ALG_SHA512_RSA,
        }
    } else if oid.content == OID_EC_PUBLIC_KEY {
        match hash_len {
            32 => ALG_ECDSA_SHA256,
            48 => ALG_ECDSA_SHA384,
            _ => {
                return Err(CaError::CmsAlgorithmUnsupported {
                    oid: format!("{} with this digest", oid_string(oid.content)),
                })
            }
        }
    } else {
        alg_der
    };
    Ok(mapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_type_names_map_to_full_algorithms() {
        let rsa = [
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 1, 5, 0,
        ];
        assert_eq!(signature_algorithm(&rsa, 32).unwrap(), ALG_SHA256_RSA);
        assert_eq!(signature_algorithm(&rsa, 20).unwrap(), ALG_SHA1_RSA);
        let ec = [
            0x30, 0x09, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
        ];
        assert_eq!(signature_algorithm(&ec, 48).unwrap(), ALG_ECDSA_SHA384);
        assert!(matches!(
            signature_algorithm(&ec, 20),
            Err(CaError::CmsAlgorithmUnsupported { .. })
        ));
        assert_eq!(
            signature_algorithm(ALG_ECDSA_SHA256, 20).unwrap(),
            ALG_ECDSA_SHA256
        );
        assert!(signature_algorithm(&[0x30], 32).is_err());
    }

    #[test]
    fn signed_attrs_rules() {
        // contentType id-data + messageDigest 01 02.
        let ct = [
            0x30, 0x18, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 9, 3, 0x31, 0x0b, 0x06,
            0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 7, 1,
        ];
        let md = [
            0x30, 0x11, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 9, 4, 0x31, 0x04, 0x04,
            0x02, 1, 2,
        ];
        let both = [&ct[..], &md[..]].concat();
        assert_eq!(check_signed_attrs(&both).unwrap(), &[1, 2]);
        assert!(check_signed_attrs(&md).is_err());
        assert!(check_signed_attrs(&ct).is_err());
        assert!(check_signed_attrs(&[&both[..], &md[..]].concat()).is_err());
        assert!(check_signed_attrs(&[&ct[..], &both[..]].concat()).is_err());
        assert!(check_signed_attrs(&both[..both.len() - 1]).is_err());
    }
}
