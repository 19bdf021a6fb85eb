//! `MDM-Signature` message signatures: detached CMS made with OpenSSL by device certificates
//! this CA issued, verified with `winmdm::ca::verify_detached_signature`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use time::OffsetDateTime;
use winmdm::ca::{
    testing, verify_csr, verify_detached_signature, verify_signature_header, Ca, CaError,
    KeyAlgorithm, MAX_SIGNATURE_LEN,
};

use super::{ec_ca, now, openssl, rsa_ca};

const DEV: &str = "1E08C6E95D8BB843B1278FF45BC60CC6";

const BODY: &[u8] = br#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>1</MsgID><Target><LocURI>https://mdm.example.com/ManagementServer/MDM.svc</LocURI></Target><Source><LocURI>1E08C6E95D8BB843B1278FF45BC60CC6</LocURI></Source></SyncHdr><SyncBody><Alert><CmdID>2</CmdID><Data>1201</Data></Alert><Final/></SyncBody></SyncML>"#;

/// A temp dir when openssl runs here, else prints the SKIP line.
fn openssl_dir() -> Option<tempfile::TempDir> {
    match Command::new("openssl").arg("version").output() {
        Ok(o) if o.status.success() => Some(tempfile::tempdir().unwrap()),
        _ => {
            println!("SKIP: openssl not found");
            None
        }
    }
}

/// Issues a device certificate of `alg` from `ca` at `at`, valid one day, and writes
/// `<name>.pem` / `<name>.key` into `dir`. Returns the serial.
fn device(ca: &Ca, alg: KeyAlgorithm, at: OffsetDateTime, dir: &Path, name: &str) -> String {
    let (csr, key) = testing::device_csr(DEV, alg);
    let cert = ca
        .issue_device_cert(
            &verify_csr(&csr, 2048).unwrap(),
            DEV,
            Duration::from_secs(86400),
            at,
        )
        .unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), &cert.pem).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    cert.serial_hex
}

/// `openssl cms -sign` of `body.xml` by `<name>.pem`, DER; `extra` adds options.
fn sign(dir: &Path, name: &str, extra: &[&str]) -> Vec<u8> {
    let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
    let out = format!("{name}-{}.p7s", extra.join("").replace([':', '-'], ""));
    let mut a = vec![
        "cms", "-sign", "-binary", "-outform", "DER", "-in", "body.xml", "-signer", &cert,
        "-inkey", &key, "-out", &out,
    ];
    a.extend_from_slice(extra);
    let (ok, msg) = openssl(dir, &a);
    assert!(ok, "openssl {a:?}: {msg}");
    std::fs::read(dir.join(&out)).unwrap()
}

fn setup() -> Option<tempfile::TempDir> {
    let dir = openssl_dir()?;
    std::fs::write(dir.path().join("body.xml"), BODY).unwrap();
    Some(dir)
}

#[test]
fn ca_cms_accepts_openssl_signatures() {
    let Some(dir) = setup() else { return };
    let d = dir.path();
    let ca = rsa_ca();
    let rsa_serial = device(ca, KeyAlgorithm::Rsa2048, now(), d, "rsa");
    let ec_serial = device(ca, KeyAlgorithm::EcdsaP256, now(), d, "ec");
    let p384_serial = device(ca, KeyAlgorithm::EcdsaP384, now(), d, "p384");
    let cases: &[(&str, &str, &[&str])] = &[
        ("rsa", &rsa_serial, &["-md", "sha256"]),
        ("rsa", &rsa_serial, &["-md", "sha256", "-noattr"]),
        ("rsa", &rsa_serial, &["-md", "sha1"]),
        ("rsa", &rsa_serial, &["-md", "sha1", "-noattr"]),
        ("rsa", &rsa_serial, &["-md", "sha384"]),
        ("rsa", &rsa_serial, &["-md", "sha512", "-keyid"]),
        (
            "rsa",
            &rsa_serial,
            &[
                "-md",
                "sha256",
                "-keyopt",
                "rsa_padding_mode:pss",
                "-keyopt",
                "rsa_pss_saltlen:digest",
            ],
        ),
        ("ec", &ec_serial, &["-md", "sha256"]),
        ("ec", &ec_serial, &["-md", "sha256", "-noattr"]),
        ("ec", &ec_serial, &["-md", "sha384", "-keyid"]),
        ("p384", &p384_serial, &["-md", "sha384"]),
        ("p384", &p384_serial, &["-md", "sha256", "-noattr"]),
    ];
    for (name, serial, extra) in cases {
        let p7 = sign(d, name, extra);
        let id = verify_detached_signature(ca, &p7, BODY, now())
            .unwrap_or_else(|e| panic!("{name} {extra:?}: {e}"));
        assert_eq!(id.device_id, DEV);
        assert_eq!(&id.serial_hex, serial, "{name} {extra:?}");
        // The same through the header, as Windows sends it (and wrapped, and unpadded).
        let b64 = base64::engine::general_purpose::STANDARD.encode(&p7);
        assert_eq!(verify_signature_header(ca, &b64, BODY, now()).unwrap(), id);
        let wrapped: String = b64
            .as_bytes()
            .chunks(64)
            .map(|c| format!(" {}\r\n", std::str::from_utf8(c).unwrap()))
            .collect();
        assert_eq!(
            verify_signature_header(ca, &wrapped, BODY, now()).unwrap(),
            id
        );
        let unpadded = b64.trim_end_matches('=');
        assert_eq!(
            verify_signature_header(ca, unpadded, BODY, now()).unwrap(),
            id
        );
    }
}

fn assert_sig_invalid(r: Result<winmdm::ca::CertIdentity, CaError>, what: &str) {
    match r {
        Err(e @ CaError::SignatureInvalid) => assert!(e.is_peer_fault()),
        other => panic!("{what}: {other:?}"),
    }
}

#[test]
fn ca_cms_rejects_altered_body_and_signature() {
    let Some(dir) = setup() else { return };
    let d = dir.path();
    let ca = rsa_ca();
    device(ca, KeyAlgorithm::Rsa2048, now(), d, "rsa");
    device(ca, KeyAlgorithm::EcdsaP256, now(), d, "ec");
    for name in ["rsa", "ec"] {
        for extra in [&["-md", "sha256"][..], &["-md", "sha256", "-noattr"][..]] {
            let what = format!("{name} {extra:?}");
            let p7 = sign(d, name, extra);
            // One byte of the body changed, or one byte more.
            for at in [0, BODY.len() / 2, BODY.len() - 1] {
                let mut body = BODY.to_vec();
                body[at] ^= 0x01;
                assert_sig_invalid(verify_detached_signature(ca, &p7, &body, now()), &what);
            }
            let longer = [BODY, b" "].concat();
            assert_sig_invalid(verify_detached_signature(ca, &p7, &longer, now()), &what);
            assert_sig_invalid(verify_detached_signature(ca, &p7, b"", now()), &what);
            // The signature value is the last element (no unsigned attributes).
            for back in [1, 5, 20] {
                let mut bad = p7.clone();
                let n = bad.len() - back;
                bad[n] ^= 0x80;
                assert_sig_invalid(verify_detached_signature(ca, &bad, BODY, now()), &what);
            }
        }
    }
}

#[test]
fn ca_cms_rejects_foreign_expired_and_certless_signers() {
    let Some(dir) = setup() else { return };
    let d = dir.path();
    let ca = rsa_ca();
    // Signed by a device certificate of another CA.
    device(ec_ca(), KeyAlgorithm::Rsa2048, now(), d, "foreign");
    let p7 = sign(d, "foreign", &["-md", "sha256"]);
    assert!(verify_detached_signature(ec_ca(), &p7, BODY, now()).is_ok());
    match verify_detached_signature(ca, &p7, BODY, now()) {
        Err(e @ CaError::CertRejected { .. }) => assert!(e.is_peer_fault()),
        other => panic!("foreign CA: {other:?}"),
    }
    // Issued ten days ago for one day.
    device(
        ca,
        KeyAlgorithm::Rsa2048,
        now() - time::Duration::days(10),
        d,
        "old",
    );
    let p7 = sign(d, "old", &["-md", "sha256"]);
    match verify_detached_signature(ca, &p7, BODY, now()) {
        Err(CaError::CertRejected { reason }) => assert!(reason.contains("expired"), "{reason}"),
        other => panic!("expired: {other:?}"),
    }
    // Still accepted at a time inside its validity: only the date was wrong.
    let then = now() - time::Duration::days(10) + time::Duration::hours(1);
    assert!(verify_detached_signature(ca, &p7, BODY, then).is_ok());
    // A valid certificate, checked after it expired.
    device(ca, KeyAlgorithm::EcdsaP256, now(), d, "ec");
    let p7 = sign(d, "ec", &["-md", "sha256"]);
    assert!(matches!(
        verify_detached_signature(ca, &p7, BODY, now() + time::Duration::days(2)),
        Err(CaError::CertRejected { .. })
    ));
    // No certificates in the SignedData.
    for extra in [
        &["-md", "sha256", "-nocerts"][..],
        &["-nocerts", "-noattr"][..],
    ] {
        let p7 = sign(d, "ec", extra);
        match verify_detached_signature(ca, &p7, BODY, now()) {
            Err(e @ CaError::CmsSignerCertMissing) => assert!(e.is_peer_fault()),
            other => panic!("{extra:?}: {other:?}"),
        }
    }
}

#[test]
fn ca_cms_rejects_pss_with_other_salt_length() {
    // The CSR allow-list's PSS rule (salt length = hash length) applies here too; OpenSSL's
    // default is the maximum salt length.
    let Some(dir) = setup() else { return };
    let d = dir.path();
    let ca = rsa_ca();
    device(ca, KeyAlgorithm::Rsa2048, now(), d, "rsa");
    let p7 = sign(
        d,
        "rsa",
        &["-md", "sha256", "-keyopt", "rsa_padding_mode:pss"],
    );
    match verify_detached_signature(ca, &p7, BODY, now()) {
        Err(e @ CaError::CmsAlgorithmUnsupported { .. }) => assert!(e.is_peer_fault()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ca_cms_signer_must_be_the_carried_certificate_and_alone() {
    let Some(dir) = setup() else { return };
    let d = dir.path();
    let ca = rsa_ca();
    device(ca, KeyAlgorithm::Rsa2048, now(), d, "rsa");
    device(ca, KeyAlgorithm::EcdsaP256, now(), d, "ec");
    std::fs::write(d.join("ca.pem"), ca.cert_pem()).unwrap();
    // Extra certificates (the CA) alongside the signer's: fine.
    let p7 = sign(d, "rsa", &["-md", "sha256", "-certfile", "ca.pem"]);
    assert_eq!(
        verify_detached_signature(ca, &p7, BODY, now())
            .unwrap()
            .device_id,
        DEV
    );
    // Only someone else's certificates: the signer's is missing.
    for extra in [
        &["-md", "sha256", "-nocerts", "-certfile", "ec.pem"][..],
        &["-md", "sha256", "-nocerts", "-keyid", "-certfile", "ec.pem"][..],
    ] {
        let p7 = sign(d, "rsa", extra);
        assert!(
            matches!(
                verify_detached_signature(ca, &p7, BODY, now()),
                Err(CaError::CmsSignerCertMissing)
            ),
            "{extra:?}"
        );
    }
    // Two signers.
    let (ok, msg) = openssl(
        d,
        &[
            "cms", "-sign", "-binary", "-outform", "DER", "-in", "body.xml", "-md", "sha256",
            "-signer", "rsa.pem", "-inkey", "rsa.key", "-signer", "ec.pem", "-inkey", "ec.key",
            "-out", "two.p7s",
        ],
    );
    assert!(ok, "{msg}");
    let p7 = std::fs::read(d.join("two.p7s")).unwrap();
    match verify_detached_signature(ca, &p7, BODY, now()) {
        Err(CaError::CmsMalformed { reason }) => assert!(reason.contains("SignerInfo"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ca_cms_rejects_embedded_content() {
    let Some(dir) = setup() else { return };
    let d = dir.path();
    let ca = rsa_ca();
    device(ca, KeyAlgorithm::Rsa2048, now(), d, "rsa");
    let p7 = sign(d, "rsa", &["-md", "sha256", "-nodetach"]);
    match verify_detached_signature(ca, &p7, BODY, now()) {
        Err(e @ CaError::CmsMalformed { .. }) => {
            assert!(e.to_string().contains("detached"), "{e}");
            assert!(e.is_peer_fault());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ca_cms_never_panics_on_damaged_input() {
    let Some(dir) = setup() else { return };
    let d = dir.path();
    let ca = rsa_ca();
    let ec = device(ca, KeyAlgorithm::EcdsaP256, now(), d, "ec");
    let rsa = device(ca, KeyAlgorithm::Rsa2048, now(), d, "rsa");
    for (name, serial, extra) in [
        ("ec", &ec, &["-md", "sha256"][..]),
        ("ec", &ec, &["-md", "sha256", "-noattr"][..]),
        ("rsa", &rsa, &["-md", "sha1", "-keyid"][..]),
    ] {
        let p7 = sign(d, name, extra);
        for i in (0..p7.len()).step_by(11) {
            // Truncated here.
            let r = verify_detached_signature(ca, &p7[..i], BODY, now());
            assert!(r.is_err(), "truncated at {i} accepted");
            assert!(r.unwrap_err().is_peer_fault());
            // Garbage written here: refused, or landed in unsigned bookkeeping (e.g. the
            // digestAlgorithms set) and changes nothing about who signed.
            for g in [0x00, 0xff, 0x80] {
                let mut bad = p7.clone();
                bad[i] = g;
                if let Ok(id) = verify_detached_signature(ca, &bad, BODY, now()) {
                    assert_eq!(&id.serial_hex, serial, "byte {i} = {g:#x}");
                }
            }
            // Garbage appended after a prefix.
            let mut junk = p7[..i].to_vec();
            junk.extend(std::iter::repeat_n(0x30, 11));
            assert!(verify_detached_signature(ca, &junk, BODY, now()).is_err());
        }
        // Trailing bytes after a valid signature.
        let mut trailing = p7.clone();
        trailing.push(0);
        assert!(matches!(
            verify_detached_signature(ca, &trailing, BODY, now()),
            Err(CaError::CmsMalformed { .. })
        ));
    }
    for junk in [
        &b""[..],
        b"\x30",
        b"\x30\x80",
        b"\x30\x84\xff\xff\xff\xff",
        b"garbage",
    ] {
        assert!(matches!(
            verify_detached_signature(ca, junk, BODY, now()),
            Err(CaError::CmsMalformed { .. })
        ));
    }
}

#[test]
fn ca_cms_header_and_size_limits() {
    let ca = rsa_ca();
    for bad in ["", "   \r\n", "not base64!", "@@@@"] {
        match verify_signature_header(ca, bad, BODY, now()) {
            Err(e @ CaError::CmsMalformed { .. }) => assert!(e.is_peer_fault()),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let huge = vec![0x30; MAX_SIGNATURE_LEN + 1];
    assert!(matches!(
        verify_detached_signature(ca, &huge, BODY, now()),
        Err(CaError::CmsMalformed { .. })
    ));
    let b64 = base64::engine::general_purpose::STANDARD.encode(&huge);
    assert!(matches!(
        verify_signature_header(ca, &b64, BODY, now()),
        Err(CaError::CmsMalformed { .. })
    ));
    // The header names the caller should look for.
    assert_eq!(
        winmdm::ca::SIGNATURE_HEADER_NAMES,
        ["MDM-Signature", "MS-Signature"]
    );
}
