//! Key and signature-algorithm checks for [`verify_csr`](super::verify_csr): the allow-list,
//! mapped onto aws-lc-rs verifiers.

use aws_lc_rs::signature::{self, VerificationAlgorithm};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_HASH_SHA1, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_HASH_SHA256,
    OID_NIST_HASH_SHA384, OID_NIST_HASH_SHA512, OID_PKCS1_RSAENCRYPTION, OID_PKCS1_RSASSAPSS,
    OID_PKCS1_SHA1WITHRSA, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA,
    OID_PKCS1_SHA512WITHRSA, OID_SHA1_WITH_RSA, OID_SIG_ECDSA_WITH_SHA256,
    OID_SIG_ECDSA_WITH_SHA384,
};
use x509_parser::signature_algorithm::RsaSsaPssParams;

use super::CaError;

/// x509-parser does not check the tag of the signature algorithm's OID (an `ObjectDescriptor`
/// parses as the same algorithm); the bytes are outside the signed data, so check them here:
/// the outer SEQUENCE's header, the CertificationRequestInfo, then `30 xx 06`.
pub(super) fn algorithm_identifier_tags_ok(der: &[u8], cri_len: usize) -> bool {
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
pub(super) enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
}

impl KeyKind {
    pub(super) fn name(self) -> &'static str {
        match self {
            KeyKind::Rsa => "RSA",
            KeyKind::EcP256 => "EC-P256",
            KeyKind::EcP384 => "EC-P384",
        }
    }
}

pub(super) struct KeyInfo {
    pub(super) kind: KeyKind,
    pub(super) bits: usize,
}

/// Largest RSA modulus aws-lc-rs verifies with.
const MAX_RSA_BITS: usize = 8192;

pub(super) fn check_key(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
    min_rsa_bits: usize,
) -> Result<KeyInfo, CaError> {
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_PKCS1_RSAENCRYPTION {
        let (bits, exponent) = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
                (rsa_modulus_bits(rsa.modulus), rsa_exponent(rsa.exponent))
            }
            _ => (0, None),
        };
        if bits == 0 {
            return Err(CaError::CsrMalformed {
                reason: "undecodable RSA public key".into(),
            });
        }
        // Windows always uses 65537; small exponents (3) open the door to the classic
        // low-exponent attacks, large or even ones are nonsense.
        if exponent != Some(RSA_EXPONENT) {
            return Err(CaError::KeyAlgorithmUnsupported {
                oid: format!(
                    "{alg} (RSA public exponent {}, only {RSA_EXPONENT} is accepted)",
                    exponent.map_or_else(|| "larger than 64 bits".to_string(), |e| e.to_string())
                ),
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

/// The only RSA public exponent accepted (F4, what Windows and every modern library use).
pub(super) const RSA_EXPONENT: u64 = 65_537;

/// A big-endian unsigned exponent as a number (`None` when it does not fit 64 bits).
fn rsa_exponent(e: &[u8]) -> Option<u64> {
    let start = e.iter().position(|&b| b != 0).unwrap_or(e.len());
    let e = &e[start..];
    if e.len() > 8 {
        return None;
    }
    Some(e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
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
pub(super) fn pick_verifier(
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
}
