//! MS-WSTEP renewal (`RequestType …/Renew`, ROBO): the token is a PKCS#7 / CMS `SignedData`
//! (RFC 5652) whose content is the new PKCS#10, signed with the key of the certificate being
//! renewed. Only the structure needed for that is read, with a minimal DER walker.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, VerificationAlgorithm};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{verify_csr, Ca, CaError, CertIdentity, CsrVerified};

/// 1.2.840.113549.1.7.2 signedData.
pub(super) const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
/// 1.2.840.113549.1.9.4 messageDigest.
pub(super) const OID_MESSAGE_DIGEST: &[u8] =
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
/// 1.2.840.113549.1.1.1 rsaEncryption (CMS often names the signature algorithm this way).
pub(super) const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// 1.3.14.3.2.26 SHA-1.
const OID_SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
/// 2.16.840.1.101.3.4.2.{1,2,3} SHA-256/384/512.
const OID_SHA2_PREFIX: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02];
/// 1.2.840.113549.1.1.{5,11,12,13} shaNNNWithRSAEncryption.
const OID_PKCS1_PREFIX: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
/// 1.2.840.10045.4.3.{2,3} ecdsa-with-SHA256/384.
const OID_ECDSA_PREFIX: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];

/// One DER element: tag byte, content, and the whole encoding.
pub(super) struct Tlv<'a> {
    pub(super) tag: u8,
    pub(super) content: &'a [u8],
    pub(super) whole: &'a [u8],
}

/// Reads one definite-length DER element from the front of `input`.
pub(super) fn tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    let whole = input.get(..end)?;
    Some((
        Tlv {
            tag,
            content: &whole[hdr..],
            whole,
        },
        &input[end..],
    ))
}

/// Reads the next element and checks its tag.
fn expect<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(Tlv<'a>, &'a [u8]), CaError> {
    match tlv(input) {
        Some((t, rest)) if t.tag == tag => Ok((t, rest)),
        _ => Err(bad(what)),
    }
}

fn bad(what: &str) -> CaError {
    CaError::CsrMalformed {
        reason: format!("PKCS#7 renewal token: {what}"),
    }
}

impl Ca {
    /// Verifies an MS-WSTEP renewal token (the base64-decoded `BinarySecurityToken` with
    /// `ValueType=…#PKCS7`): a `SignedData` holding the new PKCS#10, signed by a device
    /// certificate this CA issued that is valid at `now`.
    ///
    /// Returns the verified new request (checked by [`verify_csr`] with `min_rsa_bits`) and the
    /// identity of the certificate being renewed. If the new request carries a DeviceID
    /// extension it must name the same device ([`CaError::DeviceIdMismatch`]). Errors:
    /// [`CaError::CsrMalformed`] for the structure, [`CaError::CsrSignatureInvalid`] for the
    /// outer signature or digest, [`CaError::CertRejected`] when the signer certificate is not
    /// ours or not valid, and those of [`verify_csr`] for the inner request.
    ///
    /// Tested with OpenSSL-made CMS (`openssl cms -sign`, with and without signed attributes);
    /// no Windows renewal capture was available.
    pub fn verify_renewal(
        &self,
        pkcs7_der: &[u8],
        min_rsa_bits: usize,
        now: time::OffsetDateTime,
    ) -> Result<(CsrVerified, CertIdentity), CaError> {
        // ContentInfo ::= SEQUENCE { contentType, [0] EXPLICIT SignedData }
        let (ci, rest) = expect(pkcs7_der, 0x30, "ContentInfo")?;
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        let (ct, rest) = expect(ci.content, 0x06, "contentType")?;
        if ct.content != OID_SIGNED_DATA {
            return Err(bad("not signedData"));
        }
        let (explicit, _) = expect(rest, 0xa0, "content")?;
        let (sd, _) = expect(explicit.content, 0x30, "SignedData")?;
        // version, digestAlgorithms, encapContentInfo
        let (_, rest) = expect(sd.content, 0x02, "version")?;
        let (_, rest) = expect(rest, 0x31, "digestAlgorithms")?;
        let (eci, mut rest) = expect(rest, 0x30, "encapContentInfo")?;
        let (_, eci_rest) = expect(eci.content, 0x06, "eContentType")?;
        let (econtent, _) = expect(eci_rest, 0xa0, "eContent (detached content unsupported)")?;
        let (octets, _) = expect(econtent.content, 0x04, "eContent OCTET STRING")?;
        let csr_der = octets.content;

        // certificates [0] IMPLICIT, crls [1] IMPLICIT, then signerInfos SET.
        let mut certs: Vec<&[u8]> = Vec::new();
        if let Some((t, r)) = tlv(rest).filter(|(t, _)| t.tag == 0xa0) {
            let mut c = t.content;
            while !c.is_empty() {
                let (cert, r2) = expect(c, 0x30, "certificate")?;
                certs.push(cert.whole);
                c = r2;
            }
            rest = r;
        }
        if let Some((_, r)) = tlv(rest).filter(|(t, _)| t.tag == 0xa1) {
            rest = r;
        }
        let (signer_infos, _) = expect(rest, 0x31, "signerInfos")?;
        let (si, more) = expect(signer_infos.content, 0x30, "SignerInfo")?;
        if !more.is_empty() {
            return Err(bad("more than one signer"));
        }

        // SignerInfo ::= SEQUENCE { version, sid, digestAlgorithm, [0] signedAttrs OPTIONAL,
        //                           signatureAlgorithm, signature OCTET STRING, … }
        let (_, r) = expect(si.content, 0x02, "SignerInfo version")?;
        let (sid, r) = tlv(r).ok_or_else(|| bad("sid"))?;
        let (digest_alg, r) = expect(r, 0x30, "digestAlgorithm")?;
        let (signed_attrs, r) = match tlv(r) {
            Some((t, r2)) if t.tag == 0xa0 => (Some(t), r2),
            _ => (None, r),
        };
        let (sig_alg, r) = expect(r, 0x30, "signatureAlgorithm")?;
        let (sig, _) = expect(r, 0x04, "signature")?;

        let signer_der = find_signer(&certs, &sid)?;
        let identity = self.authenticate_device_cert(signer_der, now)?;

        let (hash_oid, _) = expect(digest_alg.content, 0x06, "digest OID")?;
        let hash = digest_for(hash_oid.content)?;
        let signed: Vec<u8> = match &signed_attrs {
            Some(attrs) => {
                let want = digest::digest(hash, csr_der);
                if message_digest(attrs.content)? != want.as_ref() {
                    return Err(CaError::CsrSignatureInvalid);
                }
                // The signature covers the attributes re-tagged as SET OF (RFC 5652 §5.4).
                let mut v = attrs.whole.to_vec();
                v[0] = 0x31;
                v
            }
            None => csr_der.to_vec(),
        };
        let (sig_oid, _) = expect(sig_alg.content, 0x06, "signature OID")?;
        let alg = verifier(sig_oid.content, hash)?;
        let (_, signer) =
            X509Certificate::from_der(signer_der).map_err(|_| bad("signer certificate"))?;
        signature::UnparsedPublicKey::new(alg, &signer.public_key().subject_public_key.data[..])
            .verify(&signed, sig.content)
            .map_err(|_| CaError::CsrSignatureInvalid)?;

        let csr = verify_csr(csr_der, min_rsa_bits)?;
        if let Some(in_csr) = csr.device_id_ext() {
            if !in_csr.eq_ignore_ascii_case(&identity.device_id) {
                return Err(CaError::DeviceIdMismatch {
                    requested: identity.device_id.clone(),
                    in_csr: in_csr.to_owned(),
                });
            }
        }
        Ok((csr, identity))
    }
}

/// The certificate named by `sid`: IssuerAndSerialNumber, or `[0]` SubjectKeyIdentifier.
fn find_signer<'a>(certs: &[&'a [u8]], sid: &Tlv<'_>) -> Result<&'a [u8], CaError> {
    let (issuer, serial) = if sid.tag == 0x30 {
        let (issuer, r) = expect(sid.content, 0x30, "sid issuer")?;
        let (serial, _) = expect(r, 0x02, "sid serial")?;
        (Some(issuer.whole), serial.content)
    } else if sid.tag == 0x80 {
        (None, sid.content)
    } else {
        return Err(bad("sid"));
    };
    for der in certs {
        let Ok((_, c)) = X509Certificate::from_der(der) else {
            continue;
        };
        let hit = match issuer {
            Some(issuer) => c.issuer().as_raw() == issuer && c.raw_serial() == serial,
            None => c.extensions().iter().any(|e| {
                matches!(e.parsed_extension(),
                    x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k)
                        if k.0 == serial)
            }),
        };
        if hit {
            return Ok(der);
        }
    }
    Err(CaError::CertRejected {
        reason: "renewal token does not carry its signer's certificate".into(),
    })
}

pub(super) fn digest_for(oid: &[u8]) -> Result<&'static digest::Algorithm, CaError> {
    if oid == OID_SHA1 {
        return Ok(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    }
    match oid.strip_prefix(OID_SHA2_PREFIX) {
        Some([1]) => Ok(&digest::SHA256),
        Some([2]) => Ok(&digest::SHA384),
        Some([3]) => Ok(&digest::SHA512),
        _ => Err(CaError::CsrAlgorithmUnsupported {
            oid: "PKCS#7 digest algorithm".into(),
        }),
    }
}

/// The messageDigest attribute's value.
fn message_digest(attrs: &[u8]) -> Result<&[u8], CaError> {
    let mut rest = attrs;
    while !rest.is_empty() {
        let (attr, r) = expect(rest, 0x30, "signed attribute")?;
        let (oid, values) = expect(attr.content, 0x06, "attribute type")?;
        if oid.content == OID_MESSAGE_DIGEST {
            let (set, _) = expect(values, 0x31, "attribute values")?;
            let (octets, _) = expect(set.content, 0x04, "messageDigest")?;
            return Ok(octets.content);
        }
        rest = r;
    }
    Err(bad("no messageDigest attribute"))
}

fn verifier(
    sig_oid: &[u8],
    hash: &'static digest::Algorithm,
) -> Result<&'static dyn VerificationAlgorithm, CaError> {
    let unsupported = || CaError::CsrAlgorithmUnsupported {
        oid: "PKCS#7 signature algorithm".into(),
    };
    let h = hash.output_len();
    let rsa_by_hash = || -> Result<&'static dyn VerificationAlgorithm, CaError> {
        Ok(match h {
            20 => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            32 => &signature::RSA_PKCS1_2048_8192_SHA256,
            48 => &signature::RSA_PKCS1_2048_8192_SHA384,
            _ => &signature::RSA_PKCS1_2048_8192_SHA512,
        })
    };
    if sig_oid == OID_RSA {
        return rsa_by_hash();
    }
    if let Some(n) = sig_oid.strip_prefix(OID_PKCS1_PREFIX) {
        // The named hash must agree with digestAlgorithm.
        let ok = matches!((n, h), ([5], 20) | ([11], 32) | ([12], 48) | ([13], 64));
        return if ok {
            rsa_by_hash()
        } else {
            Err(unsupported())
        };
    }
    match (sig_oid.strip_prefix(OID_ECDSA_PREFIX), h) {
        (Some([2]), 32) => Ok(&signature::ECDSA_P256_SHA256_ASN1),
        (Some([3]), 48) => Ok(&signature::ECDSA_P384_SHA384_ASN1),
        _ => Err(unsupported()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_reader_never_panics() {
        assert!(tlv(&[]).is_none());
        assert!(tlv(&[0x30]).is_none());
        assert!(tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert!(tlv(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        let (t, rest) = tlv(&[0x04, 0x01, 0xaa, 0x00]).unwrap();
        assert_eq!((t.tag, t.content, rest), (0x04, &[0xaa][..], &[0x00][..]));
    }
}
