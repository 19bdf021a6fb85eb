//! Requests that must be refused, each with its specific error, and never a panic.

use winmdm::ca::{testing, verify_csr, CaError, KeyAlgorithm};

use super::{openssl, openssl_dir};

/// The Windows capture if present, else a generated Windows-like request.
fn sample() -> Vec<u8> {
    match super::windows_csr() {
        Some((der, _)) => der,
        None => testing::device_csr("1E08C6E95D8BB843B1278FF45BC60CC6", KeyAlgorithm::Rsa2048).0,
    }
}

#[test]
fn ca_reject_rsa_1024() {
    let der = testing::rsa1024_csr();
    match verify_csr(&der, 2048) {
        Err(
            e @ CaError::KeyTooSmall {
                bits: 1024,
                min: 2048,
            },
        ) => assert!(e.is_peer_fault()),
        other => panic!("{other:?}"),
    }
    // The floor is the caller's (down to 1024): the same request verifies at 1024.
    let ok = verify_csr(&der, 1024).unwrap();
    assert_eq!((ok.key_bits(), ok.signature_alg()), (1024, "sha256RSA"));
    // Nobody gets below 1024.
    assert!(verify_csr(&der, 0).is_ok());
}

#[test]
fn ca_reject_flipped_signature_byte() {
    let mut der = sample();
    let n = der.len() - 10;
    der[n] ^= 0x01;
    assert!(matches!(
        verify_csr(&der, 2048),
        Err(CaError::CsrSignatureInvalid)
    ));
}

#[test]
fn ca_reject_flipped_subject_byte() {
    let mut der = sample();
    // Offset 30 is inside the subject CN of both the capture and generated requests.
    let at = 30;
    der[at] ^= 0x01;
    assert!(matches!(
        verify_csr(&der, 2048),
        Err(CaError::CsrSignatureInvalid)
    ));
}

#[test]
fn ca_reject_swapped_device_id_extension() {
    // Someone rewrites the DeviceID in the request: the signature no longer verifies.
    let der = sample();
    let csr = verify_csr(&der, 2048).unwrap();
    let id = csr.device_id_ext().unwrap().as_bytes().to_vec();
    let at = der.windows(id.len()).rposition(|w| w == id).unwrap();
    let mut bad = der.clone();
    bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
    assert!(matches!(
        verify_csr(&bad, 2048),
        Err(CaError::CsrSignatureInvalid)
    ));
}

#[test]
fn ca_reject_every_single_bit_flip() {
    // Tamper test over the whole request: no flip anywhere verifies, none panics.
    let der = sample();
    for i in 0..der.len() {
        let mut bad = der.clone();
        bad[i] ^= 0x01;
        assert!(verify_csr(&bad, 2048).is_err(), "flip at {i} accepted");
    }
}

#[test]
fn ca_reject_truncations() {
    let der = sample();
    for len in (0..der.len()).step_by(13) {
        match verify_csr(&der[..len], 2048) {
            Err(CaError::CsrMalformed { .. }) => {}
            other => panic!("truncated to {len}: {other:?}"),
        }
    }
}

#[test]
fn ca_reject_garbage_empty_and_trailing_bytes() {
    for input in [
        &b""[..],
        b"\0",
        b"garbage, not DER at all",
        b"-----BEGIN CERTIFICATE REQUEST-----",
        &[0x30, 0x82, 0xff, 0xff],
        &[0x30, 0x80, 0x00, 0x00],
    ] {
        match verify_csr(input, 2048) {
            Err(CaError::CsrMalformed { .. }) => {}
            other => panic!("{input:?}: {other:?}"),
        }
    }
    let mut trailing = sample();
    trailing.push(0);
    assert!(matches!(
        verify_csr(&trailing, 2048),
        Err(CaError::CsrMalformed { .. })
    ));
}

#[test]
fn ca_accepts_ec_and_bigger_rsa_requests() {
    for (alg, bits, kind, sig) in [
        (KeyAlgorithm::EcdsaP256, 256, "EC-P256", "sha256ECDSA"),
        (KeyAlgorithm::EcdsaP384, 384, "EC-P384", "sha384ECDSA"),
        (KeyAlgorithm::Rsa3072, 3072, "RSA", "sha256RSA"),
    ] {
        let (der, _) = testing::device_csr("ABC", alg);
        let csr = verify_csr(&der, 2048).unwrap();
        assert_eq!(
            (csr.key_bits(), csr.key_algorithm(), csr.signature_alg()),
            (bits, kind, sig)
        );
        // The RSA floor does not apply to EC keys.
        let high = verify_csr(&der, 4096);
        if kind == "RSA" {
            assert!(matches!(
                high,
                Err(CaError::KeyTooSmall {
                    bits: 3072,
                    min: 4096
                })
            ));
        } else {
            assert!(high.is_ok());
        }
    }
}

#[test]
fn ca_reject_ed25519_key() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let der = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec();
    match verify_csr(&der, 2048) {
        Err(CaError::KeyAlgorithmUnsupported { oid }) => assert_eq!(oid, "1.3.101.112"),
        other => panic!("{other:?}"),
    }
}

/// Requests made by OpenSSL: other signature algorithms and curves.
#[test]
fn ca_openssl_made_requests() {
    let Some(dir) = openssl_dir("PSS / SHA-1 / curve requests") else {
        return;
    };
    let d = dir.path();
    let req = |name: &str, key_args: &[&str], sig_args: &[&str]| -> Option<Vec<u8>> {
        let key = format!("{name}.key");
        let mut a = vec!["genpkey", "-out", &key];
        a.extend_from_slice(key_args);
        let (ok, out) = openssl(d, &a);
        if !ok {
            println!("SKIP {name}: {out}");
            return None;
        }
        let csr = format!("{name}.der");
        let mut a = vec![
            "req", "-new", "-key", &key, "-subj", "/CN=x", "-outform", "DER", "-out", &csr,
        ];
        a.extend_from_slice(sig_args);
        let (ok, out) = openssl(d, &a);
        assert!(ok, "{name}: {out}");
        Some(std::fs::read(d.join(&csr)).unwrap())
    };
    let rsa = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];
    let pss = |salt: &'static str| {
        [
            "-sha256",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            salt,
        ]
    };
    if let Some(der) = req("sha1", &rsa, &["-sha1"]) {
        assert_eq!(verify_csr(&der, 2048).unwrap().signature_alg(), "sha1RSA");
    }
    if let Some(der) = req("sha512", &rsa, &["-sha512"]) {
        assert_eq!(verify_csr(&der, 2048).unwrap().signature_alg(), "sha512RSA");
    }
    if let Some(der) = req("pss", &rsa, &pss("rsa_pss_saltlen:digest")) {
        assert_eq!(
            verify_csr(&der, 2048).unwrap().signature_alg(),
            "RSASSA-PSS-SHA256"
        );
    }
    if let Some(der) = req("pssmax", &rsa, &pss("rsa_pss_saltlen:max")) {
        let e = verify_csr(&der, 2048).unwrap_err();
        assert!(matches!(e, CaError::CsrAlgorithmUnsupported { .. }), "{e}");
    }
    let ec = |curve: &'static str| ["-algorithm", "EC", "-pkeyopt", curve];
    if let Some(der) = req("p384", &ec("ec_paramgen_curve:P-384"), &["-sha384"]) {
        assert_eq!(verify_csr(&der, 2048).unwrap().key_algorithm(), "EC-P384");
    }
    if let Some(der) = req("k1", &ec("ec_paramgen_curve:secp256k1"), &["-sha256"]) {
        match verify_csr(&der, 2048) {
            Err(CaError::KeyAlgorithmUnsupported { oid }) => assert_eq!(oid, "1.3.132.0.10"),
            other => panic!("{other:?}"),
        }
    }
    if let Some(der) = req("md5", &rsa, &["-md5"]) {
        match verify_csr(&der, 2048) {
            Err(CaError::CsrAlgorithmUnsupported { oid }) => {
                assert_eq!(oid, "1.2.840.113549.1.1.4")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn ca_reject_random_mutations_without_panic() {
    // Deterministic xorshift "fuzzing": overwrite 1-4 random bytes, or cut/extend, 3000 times.
    // Every result must be an error (none of these can keep the signature valid).
    let der = sample();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..3000 {
        let mut m = der.clone();
        match next() % 3 {
            0 => {
                for _ in 0..=(next() % 4) {
                    let i = (next() as usize) % m.len();
                    let v = (next() & 0xff) as u8;
                    m[i] = if m[i] == v { v ^ 0x80 } else { v };
                }
            }
            1 => m.truncate((next() as usize) % m.len()),
            _ => m.extend((0..=(next() % 8)).map(|_| (next() & 0xff) as u8)),
        }
        assert!(verify_csr(&m, 2048).is_err());
    }
}

#[test]
fn ca_reject_unreadable_device_id_extension() {
    let ext = |value: &[u8]| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
            testing::OID_MS_DEVICE_ID,
            value.to_vec(),
        )];
        verify_csr(p.serialize_request(&key).unwrap().der(), 2048)
    };
    assert_eq!(ext(b"ABC\0").unwrap().device_id_ext(), Some("ABC"));
    assert_eq!(ext(b"A\0B\0C\0\0\0").unwrap().device_id_ext(), Some("ABC"));
    for bad in [&b"AB\x01C\0"[..], b"A B\0", b"\0", b""] {
        match ext(bad) {
            Err(CaError::CsrMalformed { reason }) => assert!(reason.contains("311.66.1.0")),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}
